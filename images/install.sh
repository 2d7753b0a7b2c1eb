#!/bin/sh
# The images' two install steps, the same for every image (images/Dockerfile runs them as
# root, in two layers):
#   install.sh requirements   the image's dependencies, /tmp/build/requirements.txt, each
#                             pinned by /tmp/build/constraints.txt (the file `make install`
#                             uses too)
#   install.sh wheel          the autokfp wheel from /tmp/dist without its dependencies
#                             (they are all in already), then `pip check`, which must pass
set -eux
case "${1:-}" in
  requirements)
    # the optional BuildKit secrets (a CA bundle, a pip.conf naming a mirror) that reach the
    # index from a build farm: mounted for this step only, never stored in a layer
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi
    # downloads go to the build's cache mount (HOME is the non-root user's by now). The
    # image's PIP_NO_CACHE_DIR=1 must be unset, not set to 0: pip disables its cache for any
    # value of it
    unset PIP_NO_CACHE_DIR
    export PIP_CACHE_DIR=/root/.cache/pip
    pip install --upgrade -c /tmp/build/constraints.txt pip
    pip install -c /tmp/build/constraints.txt -r /tmp/build/requirements.txt
    ;;
  wheel)
    pip install --no-deps /tmp/dist/autokfp-*.whl
    pip check
    rm -rf /tmp/dist /tmp/build
    ;;
  *)
    echo "usage: install.sh requirements|wheel" >&2
    exit 2
    ;;
esac
