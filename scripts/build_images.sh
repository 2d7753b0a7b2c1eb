#!/usr/bin/env bash
# Build (and optionally push) the autokfp container images, tagged with the package version
# and a fingerprint of the code they carry.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/build_images.sh [--push] [--image NAME]... [--accelerator gpu|cpu]
                               [--base auto|pull|debian] [--print-tags] [--wheel-only]

Builds the autokfp wheel into dist/, then the container images from the repository root:

  ${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}/autokfp-runtime:<tag>   (images/Dockerfile, target runtime)
  ${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}/autokfp-training:<tag>  (target training)
  ${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}/autokfp-serving:<tag>   (target serving)
  ${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}/autokfp-serving-keras:<tag>
      (target serving with the keras extra: TensorFlow CPU, for AutoKeras champions; the
      deploy step names it on their InferenceService)

<tag> is <version>-<code>: the project version from pyproject.toml ('+' replaced by '-')
and twelve hex digits of SHA-256 over the autokfp code in this checkout
(autokfp.settings.image_tag, the files the wheel ships). Compiled pipelines name the same
tag (autokfp.settings.image), so a pipeline runs only in images built from its own code;
each image's build checks that the code installed in it gives that tag. What goes in is
pinned by constraints.txt (the same file `make install` uses).

Options:
  --push               docker push each image after building it
  --image NAME         build only NAME (runtime, training, serving or serving-keras);
                       repeatable
  --accelerator A      the training image's TensorFlow: gpu (tensorflow[and-cuda], the
                       default and the release image) or cpu (a small variant for tests)
  --base MODE          where the Python base image comes from:
                         auto   (default) the usual base if it is present or can be pulled,
                                else one made here from Debian packages
                         pull   the usual base only (python:3.11-slim-bookworm, or
                                $AUTOKFP_PYTHON_IMAGE)
                         debian always the one made from Debian packages
                                (debootstrap bookworm + python3: local/python:3.11-bookworm)
  --print-tags         print "NAME IMAGE" for each selected image and exit (no Docker needed)
  --wheel-only         build the wheel into dist/ and stop
  -h, --help           show this help

Environment:
  AUTOKFP_IMAGE_REGISTRY  registry/namespace to tag with (default ghcr.io/autokfp)
  AUTOKFP_PYTHON_IMAGE    the usual base image (default python:3.11-slim-bookworm)
  AUTOKFP_LOCAL_BASE_PREFIX  the prefix of the bases made from Debian packages (default local:
                          local/debian:bookworm, local/python:3.11-bookworm); another prefix
                          makes them again, under new image ids, so every layer above is new
                          (how a build "from nothing" is measured on a machine that has them)
  AUTOKFP_DEBIAN_MIRROR   Debian mirror for debootstrap (default: the first one apt uses here,
                          else http://deb.debian.org/debian)
  AUTOKFP_BUILD_NETWORK   network for the build steps (default host: the only way a build
                          reaches the Python index on some machines; "default" for Docker's)
  PIP_CERT                a CA bundle the build's pip needs to reach its index (default
                          /etc/ssl/certs/ca-certificates.crt when it exists); passed as a
                          BuildKit secret, never stored in an image
  AUTOKFP_PIP_CONF        a pip.conf for the build (e.g. an index mirror); a secret as well
  PYTHON                  interpreter that builds the wheel (default python3)
  DOCKER                  container CLI (default docker; BuildKit is required)
  DOCKER_BUILD_ARGS       extra arguments for every build, e.g. "--platform linux/amd64"
USAGE
}

ALL_IMAGES=(runtime training serving serving-keras)
push=false
print_tags=false
wheel_only=false
accelerator=gpu
base_mode=auto
selected=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --push) push=true ;;
    --print-tags) print_tags=true ;;
    --wheel-only) wheel_only=true ;;
    --image)
      [[ $# -ge 2 ]] || { echo "error: --image needs a name (runtime, training, serving, serving-keras)" >&2; exit 2; }
      case "$2" in
        runtime | training | serving | serving-keras) selected+=("$2") ;;
        *) echo "error: unknown image '$2': choose runtime, training, serving or serving-keras" >&2; exit 2 ;;
      esac
      shift
      ;;
    --accelerator)
      [[ $# -ge 2 ]] || { echo "error: --accelerator needs gpu or cpu" >&2; exit 2; }
      case "$2" in
        gpu | cpu) accelerator="$2" ;;
        *) echo "error: unknown accelerator '$2': choose gpu or cpu" >&2; exit 2 ;;
      esac
      shift
      ;;
    --base)
      [[ $# -ge 2 ]] || { echo "error: --base needs auto, pull or debian" >&2; exit 2; }
      case "$2" in
        auto | pull | debian) base_mode="$2" ;;
        *) echo "error: unknown base '$2': choose auto, pull or debian" >&2; exit 2 ;;
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
REGISTRY="${AUTOKFP_IMAGE_REGISTRY:-ghcr.io/autokfp}"
while [[ "$REGISTRY" == */ ]]; do REGISTRY="${REGISTRY%/}"; done
USUAL_BASE="${AUTOKFP_PYTHON_IMAGE:-python:3.11-slim-bookworm}"
DEBIAN_BASE="${AUTOKFP_LOCAL_BASE_PREFIX:-local}/debian:bookworm"
DEBIAN_PYTHON_BASE="${AUTOKFP_LOCAL_BASE_PREFIX:-local}/python:3.11-bookworm"
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
# <version>-<code fingerprint>, computed by the function compiled pipelines use, over this
# checkout's autokfp/ (PYTHONPATH first: not whatever autokfp $PYTHON has installed)
TAG="$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c \
  'import sys; from autokfp.settings import image_tag; print(image_tag(sys.argv[1]))' "$VERSION")"

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
  # Fixed timestamps make the same code give the same wheel bytes, so an image build
  # reuses its cached wheel layer instead of reinstalling.
  export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}"
  # build.__main__, not build: a leftover ./build folder imports as a namespace package.
  if "$PYTHON" -c "import build.__main__" 2>/dev/null; then
    "$PYTHON" -m build --wheel --outdir dist .
  else
    "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist . \
      || "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir dist .
  fi
  rm -rf build  # setuptools' scratch folder; it must not end up in the next wheel
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

# A docker CLI that builds with BuildKit (the Dockerfiles use cache and secret mounts):
# buildx when installed, else a CLI older than 23 with DOCKER_BUILDKIT=1 (Debian's docker.io).
pick_docker() {
  local candidate
  for candidate in ${DOCKER:-} docker /usr/bin/docker; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" buildx version >/dev/null 2>&1; then
      DOCKER="$candidate"; BUILD=("$candidate" buildx build --load); return 0
    fi
    local major
    major="$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" || true
    if [[ "$major" =~ ^[0-9]+$ ]] && (( major < 23 )); then
      DOCKER="$candidate"; BUILD=(env DOCKER_BUILDKIT=1 "$candidate" build); return 0
    fi
  done
  echo "error: no Docker CLI that can build with BuildKit: install docker.io (apt-get install" \
       "docker.io) or the buildx plugin, or set DOCKER" >&2
  exit 1
}

if ! $wheel_only; then
  pick_docker
  if ! "$DOCKER" info >/dev/null 2>&1; then
    echo "error: the Docker daemon is not reachable ('$DOCKER info' fails): start dockerd" >&2
    exit 1
  fi
fi

build_wheel
$wheel_only && exit 0

extra_args=()
if [[ -n "${DOCKER_BUILD_ARGS:-}" ]]; then
  read -r -a extra_args <<<"$DOCKER_BUILD_ARGS"
fi
network="${AUTOKFP_BUILD_NETWORK:-host}"
common_args=(--network "$network" --progress plain)
pip_cert="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
[[ -s "$pip_cert" ]] && common_args+=(--secret "id=pip_cert,src=$pip_cert")
[[ -n "${AUTOKFP_PIP_CONF:-}" ]] && common_args+=(--secret "id=pip_conf,src=$AUTOKFP_PIP_CONF")

debian_mirror() {
  if [[ -n "${AUTOKFP_DEBIAN_MIRROR:-}" ]]; then echo "$AUTOKFP_DEBIAN_MIRROR"; return; fi
  local found
  found="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
           2>/dev/null | grep -m1 -E 'debian/?( |$)' | grep -oE 'https?://[^ ]+' | head -n1)" || true
  echo "${found:-http://deb.debian.org/debian}"
}

# Python 3.11 made only from Debian packages: debootstrap a minimal bookworm, import it,
# then images/base adds python3 (bookworm's is 3.11). Each step is skipped when its image
# exists, so this costs ~1 min once per machine.
make_debian_python_base() {
  if ! "$DOCKER" image inspect "$DEBIAN_BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null 2>&1 || {
      echo "error: the base image cannot be pulled and debootstrap is missing:" \
           "apt-get install -y debootstrap (or set AUTOKFP_PYTHON_IMAGE to a reachable base)" >&2
      exit 1
    }
    local rootfs mirror
    rootfs="$(mktemp -d /tmp/autokfp-debootstrap.XXXXXX)"
    mirror="$(debian_mirror)"
    echo ">> debootstrap bookworm from $mirror into $rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
      echo "error: debootstrap failed (log: $rootfs.log)" >&2; exit 1; }
    tar -C "$rootfs" -c . | "$DOCKER" import - "$DEBIAN_BASE" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
  fi
  if ! "$DOCKER" image inspect "$DEBIAN_PYTHON_BASE" >/dev/null 2>&1; then
    echo ">> building $DEBIAN_PYTHON_BASE from $DEBIAN_BASE"
    "${BUILD[@]}" "${common_args[@]}" --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE" \
      --tag "$DEBIAN_PYTHON_BASE" images/base
  fi
}

python_base() {
  case "$base_mode" in
    debian) make_debian_python_base ;;
    *)
      if "$DOCKER" image inspect "$USUAL_BASE" >/dev/null 2>&1 \
          || timeout 120 "$DOCKER" pull "$USUAL_BASE" >/dev/null 2>&1; then
        PYTHON_BASE="$USUAL_BASE"; return
      fi
      if [[ "$base_mode" == pull ]]; then
        echo "error: cannot pull $USUAL_BASE (use --base auto or debian)" >&2; exit 1
      fi
      echo ">> $USUAL_BASE cannot be pulled: using a base made from Debian packages" >&2
      make_debian_python_base
      ;;
  esac
  PYTHON_BASE="$DEBIAN_PYTHON_BASE"
}
PYTHON_BASE=""
python_base
echo ">> Python base image: $PYTHON_BASE"

summary=()
for name in "${selected[@]}"; do
  ref="$(image_ref "$name")"
  args=(--file images/Dockerfile --build-arg "VERSION=$VERSION" --build-arg "IMAGE_TAG=$TAG"
        --build-arg "PYTHON_IMAGE=$PYTHON_BASE" --tag "$ref")
  note=""
  case "$name" in
    # one Dockerfile, a target each: runtime and training with the same accelerator (cpu)
    # are the same layers; every image shares the os stage's, and the dependency layers
    # chain (core, then TensorFlow, then the pipelines extra), so serving and serving-keras
    # are the runtime's lower layers plus their wheel
    runtime) args+=(--target runtime --build-arg ACCELERATOR=cpu) ;;
    training)
      args+=(--target training
             --build-arg "ACCELERATOR=$accelerator")
      note=" (accelerator: $accelerator)"
      ;;
    # the serving image with TensorFlow, for the engines that need it to score (AutoKeras)
    serving-keras) args+=(--target serving --build-arg SERVING_DEPS=keras) ;;
    serving) args+=(--target serving) ;;
  esac
  echo ">> building $ref$note"
  started=$SECONDS
  "${BUILD[@]}" "${common_args[@]}" "${args[@]}" ${extra_args[@]+"${extra_args[@]}"} .
  seconds=$((SECONDS - started))
  size="$("$DOCKER" image inspect --format '{{.Size}}' "$ref")"
  summary+=("$(printf '%-9s %-55s %5d s %8.2f GB' "$name" "$ref" "$seconds" \
               "$(awk -v s="$size" 'BEGIN{print s/1e9}')")")
  if $push; then
    echo ">> pushing $ref"
    "$DOCKER" push "$ref"
  fi
done

echo ">> done: ${selected[*]} tagged $TAG"
printf '   %s\n' "${summary[@]}"
