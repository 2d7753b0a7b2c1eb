#!/bin/sh
# The images' two install steps, the same for every image (images/Dockerfile runs them as
# root, in two layers):
#   install.sh requirements   the image's dependencies, /tmp/build/requirements.txt, each
#                             pinned by /tmp/build/constraints.txt (the file `make install`
#                             uses too), installed from a wheelhouse kept in the build's
#                             pip cache mount (below)
#   install.sh wheel          the autokfp wheel from /tmp/dist without its dependencies
#                             (they are all in already), then `pip check`, which must pass
# AUTOKFP_BUILD_DIR and AUTOKFP_PIP_CACHE move /tmp/build and /root/.cache/pip (for the
# tests, which run this step on the host).
set -eux
build="${AUTOKFP_BUILD_DIR:-/tmp/build}"
case "${1:-}" in
  requirements)
    # the optional BuildKit secrets (a CA bundle, a pip.conf naming a mirror) that reach the
    # index from a build farm: mounted for this step only, never stored in a layer
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi
    # the build's cache mount (HOME is the non-root user's by now). The image's
    # PIP_NO_CACHE_DIR=1 must be unset, not set to 0: pip disables its cache for any value
    unset PIP_NO_CACHE_DIR
    export PIP_CACHE_DIR="${AUTOKFP_PIP_CACHE:-/root/.cache/pip}"
    # The wheelhouse: every wheel an install needs, kept in the cache mount, which dockerd
    # keeps from one build to the next. pip's own HTTP cache stays empty against an index
    # that sends no caching headers (this machine's proxy sends none), so the wheels are
    # kept here instead: an install first tries the wheelhouse alone (--no-index: no
    # request to any index); only when a wheel is missing does `pip wheel` fetch the
    # missing ones into it (the ones there are not downloaded again), and the install
    # then runs from the wheelhouse alone. Old versions stay in it; the constraints pick.
    wheelhouse="$PIP_CACHE_DIR/wheelhouse"
    mkdir -p "$wheelhouse"
    offline="$PIP_CACHE_DIR/offline-attempt.log"
    from_wheelhouse() {  # from_wheelhouse REQUIREMENT-ARGS...: pip itself, then the list
      if pip install --no-index --find-links "$wheelhouse" -c "$build/constraints.txt" \
          --upgrade "$@" 2>"$offline"; then
        echo "install.sh: $* from the wheelhouse alone (no index)"
      else
        echo "install.sh: the wheelhouse lacks a wheel for $* ($(tail -n 1 "$offline"));" \
             "fetching the missing ones into it"
        pip wheel --wheel-dir "$wheelhouse" --find-links "$wheelhouse" \
          -c "$build/constraints.txt" "$@"
        pip install --no-index --find-links "$wheelhouse" -c "$build/constraints.txt" \
          --upgrade "$@"
      fi
    }
    from_wheelhouse pip
    from_wheelhouse -r "$build/requirements.txt"
    rm -f "$offline"
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
