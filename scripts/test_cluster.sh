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
#   AUTOKFP_CLUSTER_WORKERS  2 (the default): the gs:// and s3:// loops side by side
#                            (pytest-xdist, one worker each); 0: one after the other, in this
#                            process, with their output shown as it comes
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
# the load average (1, 5, 15 min) next to each phase's time: on a shared machine the
# figures mean little without it
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }
echo ">> make test-cluster from $(date -u +%H:%M:%S) UTC, load $(load)"
# KServe's storage initializer code (kserve-storage) pins google-cloud-storage<3, which
# autokfp's own environment cannot share: it gets a venv of its own, as it has its own
# container in a cluster. Made in the background while the images build (it only downloads).
storage_venv="$AUTOKFP_CLUSTER_CACHE/kserve-storage-0.21.0"
storage_pid=""
if [[ ! -x "$storage_venv/bin/python" ]] || ! "$storage_venv/bin/python" -c "import kserve_storage" 2>/dev/null; then
  echo ">> KServe storage initializer venv, in the background: $storage_venv"
  rm -rf "$storage_venv"
  ( python3 -m venv "$storage_venv" \
      && "$storage_venv/bin/python" -m pip install --quiet kserve-storage==0.21.0 ) \
    >"$AUTOKFP_CLUSTER_CACHE/kserve-storage.log" 2>&1 &
  storage_pid=$!
fi

echo ">> images (registry $REGISTRY, CPU training variant)"
AUTOKFP_IMAGE_REGISTRY="$REGISTRY" PYTHON="$PYTHON" \
  scripts/build_images.sh --accelerator cpu --image runtime --image training --image serving \
  --image serving-keras
echo ">> images built in $((SECONDS - started)) s (load $(load))"
if [[ -n "$storage_pid" ]] && ! wait "$storage_pid"; then
  cat "$AUTOKFP_CLUSTER_CACHE/kserve-storage.log" >&2
  echo "error: could not install kserve-storage into $storage_venv" >&2
  exit 1
fi

# The two loops are two files: tests/cluster/test_cluster_in_a_box.py (gs://) and
# tests/cluster/test_cluster_on_s3.py (s3://, and the first-task check, so that the two
# files take about as long). By default they run side by side, one pytest-xdist worker each
# (--dist loadfile: a file's tests on one worker, so each box's services start once): a
# loop is mostly one task container at a time, so the other loop fills the second core
# (docs/cluster.md has the figures). AUTOKFP_CLUSTER_WORKERS=0 runs them one after the
# other in this process, with their output shown as it comes. Each loop's figures (the
# pipelines' times in containers, with the load average) go to a file printed at the end.
workers="${AUTOKFP_CLUSTER_WORKERS:-2}"
# pytest-timeout's limit is a guard against a hung task, not a speed limit: one hour a test
# either way (the gs:// loop, one after the other with nothing beside it, took more than the
# 1,800 s this used to allow on 2026-12-06 at load ~35: training 1,250 s, and it was stopped
# in its second monitoring run with every check before passed)
if [[ "$workers" == 0 ]]; then
  parallel=(-s --timeout 3600)
else
  parallel=(-n "$workers" --dist loadfile --timeout 3600)
fi
timings="$(mktemp /tmp/autokfp-box-timings.XXXXXX)"
trap 'echo ">> the loops'"'"' figures:"; cat "$timings"; rm -f "$timings"' EXIT
echo ">> tests/cluster (workers: $workers, load $(load))"
tests_started=$SECONDS
AUTOKFP_CLUSTER_TESTS=1 AUTOKFP_IMAGE_REGISTRY="$REGISTRY" AUTOKFP_BOX_TIMINGS="$timings" \
  KSERVE_STORAGE_PYTHON="$storage_venv/bin/python" \
  "$PYTHON" -m pytest tests/cluster -p no:cacheprovider -x -v "${parallel[@]}" --durations=5 \
  ${PYTEST_ARGS:-}
echo ">> tests/cluster in $((SECONDS - tests_started)) s (load $(load))"
echo ">> make test-cluster: $((SECONDS - started)) s in total"
