#!/usr/bin/env bash
# make test-cluster: build the images (CPU training variant, and serving-keras), then run
# tests/cluster, where every pipeline task runs in its image through kfp.local.DockerRunner
# against real services: once on gcp-storage-emulator (gs://, the whole loop with H2O, its
# traffic captured by KServe's payload logger) and once on moto_server (s3://, an AutoKeras
# champion served by serving-keras).
#
# Environment:
#   PYTHON                   the project's venv Python (default .venv/bin/python)
#   AUTOKFP_TEST_REGISTRY    registry prefix of the test images (default autokfp.test: never
#                            a real registry, so a test build cannot be pushed by mistake)
#   AUTOKFP_CLUSTER_CACHE    where the KServe storage-initializer venv is kept
#                            (default /var/cache/autokfp when writable, else .cluster/)
#   AUTOKFP_BOX_KEEP_CHAMPION  copy the served champion's folder here (for
#                            scripts/benchmark_container_serving.py)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-.venv/bin/python}"
REGISTRY="${AUTOKFP_TEST_REGISTRY:-autokfp.test}"
if [[ -z "${AUTOKFP_CLUSTER_CACHE:-}" ]]; then
  if mkdir -p /var/cache/autokfp 2>/dev/null && [[ -w /var/cache/autokfp ]]; then
    AUTOKFP_CLUSTER_CACHE=/var/cache/autokfp
  else
    AUTOKFP_CLUSTER_CACHE="$ROOT/.cluster"
  fi
fi
mkdir -p "$AUTOKFP_CLUSTER_CACHE"

if ! docker info >/dev/null 2>&1; then
  echo "error: make test-cluster needs a running Docker daemon ('docker info' fails):" \
       "apt-get install -y docker.io debootstrap && dockerd &" >&2
  exit 1
fi

started=$SECONDS
echo ">> images (registry $REGISTRY, CPU training variant)"
AUTOKFP_IMAGE_REGISTRY="$REGISTRY" PYTHON="$PYTHON" \
  scripts/build_images.sh --accelerator cpu --image runtime --image training --image serving \
  --image serving-keras
echo ">> images built in $((SECONDS - started)) s"

# KServe's storage initializer code (kserve-storage) pins google-cloud-storage<3, which
# autokfp's own environment cannot share: it gets a venv of its own, as it has its own
# container in a cluster.
storage_venv="$AUTOKFP_CLUSTER_CACHE/kserve-storage-0.21.0"
if [[ ! -x "$storage_venv/bin/python" ]] || ! "$storage_venv/bin/python" -c "import kserve_storage" 2>/dev/null; then
  echo ">> KServe storage initializer venv: $storage_venv"
  rm -rf "$storage_venv"
  python3 -m venv "$storage_venv"
  "$storage_venv/bin/python" -m pip install --quiet kserve-storage==0.21.0
fi

echo ">> tests/cluster"
AUTOKFP_CLUSTER_TESTS=1 AUTOKFP_IMAGE_REGISTRY="$REGISTRY" \
  KSERVE_STORAGE_PYTHON="$storage_venv/bin/python" \
  "$PYTHON" -m pytest tests/cluster -p no:cacheprovider -x -v -s --timeout 1800 ${PYTEST_ARGS:-}
echo ">> make test-cluster: $((SECONDS - started)) s in total"
