#!/usr/bin/env bash
# Build (and optionally push) the autokfp container images, tagged with the package version.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/build_images.sh [--push] [--image NAME]... [--print-tags] [--wheel-only]

Builds the autokfp wheel into dist/, then the container images from the repository root:

  ${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}/autokfp-runtime:<version>   (images/runtime)
  ${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}/autokfp-training:<version>  (images/training)
  ${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}/autokfp-serving:<version>   (images/serving)

<version> is the project version from pyproject.toml with '+' replaced by '-', the same tag
autokfp.settings.image(name) puts into compiled pipelines.

Options:
  --push          docker push each image after building it
  --image NAME    build only NAME (runtime, training or serving); repeatable
  --print-tags    print "NAME IMAGE" for each selected image and exit (no Docker needed)
  --wheel-only    build the wheel into dist/ and stop
  -h, --help      show this help

Environment:
  AUTOKFP_IMAGE_REGISTRY  registry/namespace to tag with (default ghcr.io/autokfp)
  PYTHON                  interpreter that builds the wheel (default python3)
  DOCKER                  container CLI (default docker)
  DOCKER_BUILD_ARGS       extra arguments for every build, e.g. "--platform linux/amd64"
USAGE
}

ALL_IMAGES=(runtime training serving)
push=false
print_tags=false
wheel_only=false
selected=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --push) push=true ;;
    --print-tags) print_tags=true ;;
    --wheel-only) wheel_only=true ;;
    --image)
      [[ $# -ge 2 ]] || { echo "error: --image needs a name (runtime, training, serving)" >&2; exit 2; }
      case "$2" in
        runtime | training | serving) selected+=("$2") ;;
        *) echo "error: unknown image '$2': choose runtime, training or serving" >&2; exit 2 ;;
      esac
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ ${#selected[@]} -gt 0 ]] || selected=("${ALL_IMAGES[@]}")

PYTHON="${PYTHON:-python3}"
if [[ "$PYTHON" == */* && "$PYTHON" != /* ]]; then
  PYTHON="$PWD/$PYTHON"  # a relative interpreter path must survive the cd below
fi
DOCKER="${DOCKER:-docker}"
REGISTRY="${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}"
while [[ "$REGISTRY" == */ ]]; do REGISTRY="${REGISTRY%/}"; done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The version as installed metadata reports it (PEP 440 normalised), which is what
# autokfp.__version__ and so autokfp.settings.image() use.
project_version() {
  "$PYTHON" - <<'PY'
import pathlib
import re

text = pathlib.Path("pyproject.toml").read_text(encoding="utf-8")
try:
    import tomllib
    version = tomllib.loads(text)["project"]["version"]
except ModuleNotFoundError:  # Python 3.10
    version = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE).group(1)
try:
    from packaging.version import Version
except ModuleNotFoundError:
    from pip._vendor.packaging.version import Version
print(Version(version))
PY
}

VERSION="$(project_version)"
TAG="${VERSION//+/-}"

image_ref() {
  printf '%s/autokfp-%s:%s\n' "$REGISTRY" "$1" "$TAG"
}

if $print_tags; then
  for name in "${selected[@]}"; do
    printf '%s %s\n' "$name" "$(image_ref "$name")"
  done
  exit 0
fi

build_wheel() {
  mkdir -p dist
  rm -f dist/autokfp-*.whl
  echo ">> building the autokfp ${VERSION} wheel into dist/"
  # build.__main__, not build: a leftover ./build folder imports as a namespace package.
  if "$PYTHON" -c "import build.__main__" 2>/dev/null; then
    "$PYTHON" -m build --wheel --outdir dist .
  else
    "$PYTHON" -m pip wheel --no-deps --wheel-dir dist .
  fi
  local wheels=(dist/autokfp-*.whl)
  if [[ ${#wheels[@]} -ne 1 || ! -f ${wheels[0]} ]]; then
    echo "error: expected exactly one dist/autokfp-*.whl, found: ${wheels[*]}" >&2
    exit 1
  fi
  local wheel_version
  wheel_version="$("$PYTHON" - "${wheels[0]}" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    for line in wheel.read(name).decode("utf-8").splitlines():
        if line.startswith("Version:"):
            print(line.split(":", 1)[1].strip())
            break
PY
)"
  if [[ "$wheel_version" != "$VERSION" ]]; then
    echo "error: the wheel says version '$wheel_version' but pyproject.toml says '$VERSION'" >&2
    exit 1
  fi
  echo ">> ${wheels[0]}"
}

if ! $wheel_only && ! command -v "$DOCKER" >/dev/null 2>&1; then
  echo "error: '$DOCKER' not found: install Docker (or set DOCKER=podman) to build images" >&2
  exit 1
fi

build_wheel
$wheel_only && exit 0

extra_args=()
if [[ -n "${DOCKER_BUILD_ARGS:-}" ]]; then
  read -r -a extra_args <<<"$DOCKER_BUILD_ARGS"
fi

for name in "${selected[@]}"; do
  ref="$(image_ref "$name")"
  echo ">> building $ref"
  "$DOCKER" build \
    --file "images/$name/Dockerfile" \
    --build-arg "VERSION=$VERSION" \
    --tag "$ref" \
    ${extra_args[@]+"${extra_args[@]}"} \
    .
  if $push; then
    echo ">> pushing $ref"
    "$DOCKER" push "$ref"
  fi
done

echo ">> done: ${selected[*]} tagged $TAG"
