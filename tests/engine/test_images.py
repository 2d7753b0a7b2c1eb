"""The Dockerfile, the build inputs and the lock, checked by construction.

`make test-cluster` builds and runs the runtime, serving and CPU training images; the GPU
training image (several GB of CUDA wheels) is not built there, so what makes it right is
checked here: one CUDA stack from tensorflow[and-cuda], the same base and steps as the
others, pinned by the same constraints file.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("runtime", "training", "serving")
# every image is a target of images/Dockerfile; runtime and training stand on its engine stage,
# serving on the core's dependency stage (serving-keras: on TensorFlow's)
DOCKERFILE = ROOT / "images" / "Dockerfile"
INSTALL = ROOT / "images" / "install.sh"
sys.path.insert(0, str(ROOT / "images"))
from requirements import requirements  # noqa: E402  (images/requirements.py)

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _dockerfile(name: str = "") -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def _install(part: str) -> str:
    """The commands of one part of images/install.sh, white space folded."""
    text = INSTALL.read_text(encoding="utf-8")
    found = re.search(rf"^  {part}\)\n(.*?)^    ;;$", text, re.MULTILINE | re.DOTALL)
    assert found, part
    lines = [line.strip() for line in found.group(1).splitlines()
             if line.strip() and not line.strip().startswith("#")]
    return "; ".join(lines)


def _stages(text: str) -> dict[str, list[str]]:
    """The instructions of each stage of a Dockerfile, by stage name ("" for unnamed)."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for step in _instructions(text):
        if step.startswith("FROM "):
            words = step.split()
            current = stages.setdefault(words[3] if len(words) > 3 else "", [])
        current.append(step)
    return stages


# the dependency stages, each on the one before: what each image installs is a prefix of
# this chain
DEPENDENCY_CHAIN = ("core-deps", "keras-deps", "engine-deps")


def _image_steps(name: str) -> list[str]:
    """What the image ``name`` is built from: its target stage with the stages it stands on."""
    stages = _stages(_dockerfile(name))
    if name == "serving":
        return stages["os"] + stages["core-deps"] + stages["serving"]
    return stages["os"] + [s for dep in DEPENDENCY_CHAIN for s in stages[dep]] + \
        stages["engine"] + stages[name]


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return joined


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


@pytest.mark.parametrize("name", IMAGES)
def test_dockerfile_follows_the_house_rules(name):
    text = _dockerfile(name)
    steps = _image_steps(name)
    # on the Python base the build script chooses (the usual one or Debian's), through the
    # one os stage every image shares; the engine's two images are targets on its stage
    froms = [s for s in steps if s.startswith("FROM ")]
    if name == "serving":
        assert froms == ["FROM ${PYTHON_IMAGE} AS os", "FROM os AS core-deps",
                         "FROM ${SERVING_DEPS}-deps AS serving"], froms
    else:
        assert froms == ["FROM ${PYTHON_IMAGE} AS os", "FROM os AS core-deps",
                         "FROM core-deps AS keras-deps", "FROM keras-deps AS engine-deps",
                         "FROM engine-deps AS engine", f"FROM engine AS {name}"], froms
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in _instructions(text)
    # a syntax directive makes BuildKit pull a frontend image from Docker Hub
    assert not re.search(r"^#\s*syntax=", text, re.MULTILINE)
    # nothing fetched from outside Debian's mirror and the Python index
    for step in steps:
        assert not re.search(r"\b(curl|wget|uv|astral)\b", step), step
    # non-root, numeric, group 0, group-writable home: works under a random UID in group 0
    users = [s.split()[1] for s in steps if s.startswith("USER ")]
    assert users == ["1000:0"], users
    assert "--gid 0" in text and re.search(r"chmod 2775 [^;]*/home/autokfp", text)
    assert any(s.startswith("ENV HOME=/home/autokfp ") for s in steps)
    # the KFP v2 launcher writes input artifacts here
    assert re.search(r"chown 1000:0 /home/autokfp /gcs /minio /s3", text)
    assert "PYTHONDONTWRITEBYTECODE=1" in text and "PIP_NO_CACHE_DIR=1" in text
    assert "ARG VERSION=0.0.0" in steps
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    assert any(f'org.opencontainers.image.title="autokfp-{name}"' in s for s in steps)
    assert "openjdk-17-jre-headless" in text
    # pinned: every dependency through constraints.txt, then the wheel alone, then pip check
    # (images/install.sh, the same two steps for every image)
    assert "COPY constraints.txt images/install.sh /tmp/build/" in steps
    install = next(s for s in steps if s.endswith("sh /tmp/build/install.sh requirements"))
    # (from the wheelhouse alone, each time: a missing wheel is fetched into it first)
    requirements = _install("requirements")
    assert requirements.count(
        'pip install --no-index --find-links "$wheelhouse" -c "$build/constraints.txt"') == 2
    assert 'from_wheelhouse -r "$build/requirements.txt"' in requirements
    assert 'build="${AUTOKFP_BUILD_DIR:-/tmp/build}"' in INSTALL.read_text(encoding="utf-8")
    wheel = next(s for s in steps if "sh /tmp/build/install.sh wheel;" in s)
    assert steps.index(install) < steps.index("COPY dist/autokfp-*.whl /tmp/dist/") < \
        steps.index(wheel)
    assert _install("wheel").startswith(
        "pip install --no-deps /tmp/dist/autokfp-*.whl; pip check;")
    script = INSTALL.read_text(encoding="utf-8")
    assert "set -eux" in script
    for source in (text, script):
        assert "|| true" not in source and "pip check ||" not in source
    # the index's CA bundle and pip.conf come as BuildKit secrets, never as files in a layer
    assert "--mount=type=secret,id=pip_cert" in install
    assert "PIP_CERT=/run/secrets/pip_cert" in _install("requirements")
    assert not re.search(r"^(COPY|ADD)\s.*(\.crt|\.pem|pip\.conf)", text, re.MULTILINE)
    for line in re.findall(r"^(?:ENV|ARG)\s.*$", text, re.MULTILINE):
        assert not re.search(r"(TOKEN|PASSWORD|SECRET|CREDENTIALS|PIP_CERT)\w*=", line), line
    if name != "serving":
        # the build's checks run as root and make matplotlib's folder: it must be left to
        # group 0 (a root-owned one made every task warn and rebuild the font cache)
        assert "MPLCONFIGDIR=/tmp/matplotlib" in text
        assert re.search(r'chown -R 1000:0 "\$\{MPLCONFIGDIR\}"; \\\s+chmod -R g\+rwX '
                         r'"\$\{MPLCONFIGDIR\}"\s+#[^\n]*\n(#[^\n]*\n)*USER 1000:0', text)


def test_runtime_and_cpu_training_share_their_layers():
    """One shared stage: the CPU training variant is the runtime's layers plus labels; and
    every image, the serving ones too, stands on the os stage (Java, venv, user)."""
    stages = _stages(_dockerfile("runtime"))
    # runtime last: the default target
    assert list(stages) == ["requirements", "os", *DEPENDENCY_CHAIN, "engine", "training",
                            "serving", "runtime"]
    for name in ("runtime", "training"):
        assert all(s.startswith(("FROM engine", "LABEL ", "ENV ")) for s in stages[name]), name
    assert any("install.sh wheel" in s for s in stages["engine"])
    assert "ARG ACCELERATOR=cpu" in stages["engine"]
    # the serving image stands on the core's layers, serving-keras on TensorFlow's: the
    # runtime's lower layers, built once for all four images
    assert stages["serving"][0] == "FROM ${SERVING_DEPS}-deps AS serving"
    steps = _instructions(_dockerfile("serving"))
    first_from = next(i for i, s in enumerate(steps) if s.startswith("FROM "))
    assert "ARG SERVING_DEPS=core" in steps[:first_from]  # a global arg: FROM can use it
    script = (ROOT / "scripts" / "build_images.sh").read_text(encoding="utf-8")
    assert "serving-keras) args+=(--target serving --build-arg SERVING_DEPS=keras)" in script
    # one set-up, not one per image (duplicates D1): Java, the venv and the user are in os only
    for name in (*DEPENDENCY_CHAIN, "engine", "training", "serving", "runtime"):
        assert not any(re.search(r"apt-get|useradd|venv", s) for s in stages[name]), name
    # the release training image is the GPU one: the build script's default for it
    assert "accelerator=gpu" in script
    assert "--target runtime --build-arg ACCELERATOR=cpu" in script
    assert '--target training\n             --build-arg "ACCELERATOR=$accelerator"' in script


def test_the_gpu_training_image_has_one_cuda_stack_from_tensorflow_wheels():
    training = _dockerfile("training")
    assert "gpu) tensorflow=gpu" in training and "cpu) tensorflow=keras" in training
    assert "COPY --from=requirements /tmp/build/engine.txt /tmp/build/requirements.txt" in \
        _stages(training)["engine-deps"]
    assert "COPY --from=requirements /tmp/build/keras.txt /tmp/build/requirements.txt" in \
        _stages(training)["keras-deps"]
    assert "nvidia/cuda" not in training and "CUDA_IMAGE" not in training
    # the build fails unless the installed TensorFlow is the CUDA build (and, for cpu, is not)
    assert "tf.test.is_built_with_cuda()" in training
    gpu = [Requirement(r) for r in requirements(PROJECT, ["pipelines", "gpu"])]
    tensorflow = [r for r in gpu if canonicalize_name(r.name).startswith("tensorflow")]
    assert [(r.name, sorted(r.extras)) for r in tensorflow] == [("tensorflow", ["and-cuda"])]
    assert not any(canonicalize_name(r.name).startswith("nvidia-") for r in gpu), \
        "CUDA comes only through tensorflow[and-cuda]"
    cpu = [Requirement(r) for r in requirements(PROJECT, ["pipelines", "keras"])]
    assert [r.name for r in cpu if r.name.startswith("tensorflow")] == ["tensorflow-cpu"]
    # both variants get the same Keras stack
    keras = {r.name: str(r.specifier) for r in gpu if r.name in ("keras", "autokeras")}
    assert keras == {r.name: str(r.specifier) for r in cpu if r.name in ("keras", "autokeras")}


def test_the_serving_image_stays_lean():
    serving = _dockerfile("serving")
    stages = _stages(serving)
    assert 'ENTRYPOINT ["python", "-m", "autokfp.serving"]' in stages["serving"]
    assert "COPY --from=requirements /tmp/build/core.txt /tmp/build/requirements.txt" in \
        stages["core-deps"]
    # and the built image proves it: its build fails when a heavy package is in it (or, for
    # serving-keras, when anything but TensorFlow CPU and AutoKeras is)
    check = next(s for s in stages["serving"] if "heavy packages in the serving image" in s)
    assert "want = {'tensorflow-cpu', 'autokeras'} if sys.argv[1] == 'keras' else set()" in check
    assert "sys.exit(found != want)" in check and check.endswith('"${SERVING_DEPS}"')
    core = {canonicalize_name(Requirement(r).name) for r in requirements(PROJECT, [])}
    heavy = {"kfp", "kfp-kubernetes", "acryl-datahub", "evidently", "tensorflow",
             "tensorflow-cpu", "autokeras", "keras", "mlflow", "shap", "fairlearn"}
    assert not core & heavy, core & heavy
    assert {"kserve", "mlflow-skinny", "h2o", "jpype1"} <= core


def test_every_requirement_is_pinned_by_a_version_it_allows():
    """constraints.txt is current: re-run `make lock` after changing the dependencies."""
    pins = _pins()
    extras = [e for e in PROJECT["optional-dependencies"] if e not in ("bench",)]
    for text in requirements(PROJECT, extras):
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement}: run `make lock`")
    assert "autokfp" not in pins


@pytest.mark.parametrize("tensorflow", ["keras", "gpu"])
def test_each_dependency_layer_only_adds_to_the_one_below(tensorflow):
    """The chain core -> keras -> engine: each list holds the one below it whole, so each
    install step keeps what is installed and adds the rest (with one constraints file, no
    package is installed twice in two versions)."""
    core = requirements(PROJECT, [])
    keras = requirements(PROJECT, [tensorflow])
    engine = requirements(PROJECT, ["pipelines", tensorflow])
    assert keras[:len(core)] == core and set(keras) < set(engine)
    assert set(engine) == set(requirements(PROJECT, ["pipelines"])) | set(keras)


def test_requirements_expand_extras_made_of_extras():
    found = requirements(PROJECT, ["all"])
    names = {canonicalize_name(Requirement(r).name) for r in found}
    assert {"kfp", "tensorflow-cpu", "kserve"} <= names
    assert "tensorflow" not in names
    with pytest.raises(SystemExit, match="no extra 'cuda'"):
        requirements(PROJECT, ["cuda"])


def test_the_make_install_and_the_images_use_the_same_constraints():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "-c constraints.txt -e '.[dev]'" in makefile
    for name in IMAGES:
        assert "COPY constraints.txt images/install.sh /tmp/build/" in _image_steps(name)


@pytest.mark.parametrize("name", IMAGES)
def test_the_dependency_layer_depends_on_the_requirement_list_not_on_pyproject(name):
    """pyproject.toml goes only into the ``requirements`` stage, which reads the requirement
    lists out of it; each dependency stage copies its list (BuildKit keys the copy on its
    content), so an edit of pyproject.toml that leaves the dependencies alone (the version,
    a tool's settings) keeps the dependency layers. Before, any edit rebuilt them: 798 s for
    the four test-cluster images."""
    stages = _stages(_dockerfile(name))
    assert stages["requirements"][:2] == [
        "FROM ${PYTHON_IMAGE} AS requirements",
        "COPY pyproject.toml images/requirements.py /tmp/build/"], stages["requirements"]
    lists = ["core"] if name == "serving" else ["core", "keras", "engine"]
    for listed in lists:
        assert any("requirements.py /tmp/build/pyproject.toml" in s and
                   f"> /tmp/build/{listed}.txt" in s for s in stages["requirements"]), listed
    steps = _image_steps(name)
    assert not any("pyproject" in s for s in steps if s.startswith(("COPY", "ADD"))), steps
    copies = [s for s in steps if s.startswith("COPY")]
    installs = [i for i, s in enumerate(steps) if s.endswith("install.sh requirements")]
    assert len(installs) == len(lists), installs
    # only the constraints, the install script and the lists come before the installs, each
    # list just before its install; the wheel after them all
    assert [s for s in copies if steps.index(s) < installs[-1]] == [
        "COPY constraints.txt images/install.sh /tmp/build/",
        *(f"COPY --from=requirements /tmp/build/{listed}.txt /tmp/build/requirements.txt"
          for listed in lists)]
    for install, listed in zip(installs, lists):
        assert steps[install - 1] == (
            f"COPY --from=requirements /tmp/build/{listed}.txt /tmp/build/requirements.txt")
    assert steps.index("COPY dist/autokfp-*.whl /tmp/dist/") > installs[-1]
    # nothing fetched from outside Debian's mirror and the Python index here either
    for step in stages["requirements"]:
        assert not re.search(r"\b(curl|wget|uv|astral|pip install)\b", step), step


def test_the_install_step_uses_the_pip_cache_mount():
    """The images set PIP_NO_CACHE_DIR=1 (no cache in a running container), and pip disables
    its cache for *any* value of that variable, 0 and false included: the install step must
    unset it, or the BuildKit cache mount stays empty and every build downloads everything
    again (it did: ``export PIP_NO_CACHE_DIR=0`` left the mount at 4 kB). Runs the step's
    set-up as the image would, then asks pip where its cache is."""
    import subprocess

    text = INSTALL.read_text(encoding="utf-8")
    part = re.search(r"^  requirements\)\n(.*?)^    # The wheelhouse", text,
                     re.MULTILINE | re.DOTALL)
    assert part, "images/install.sh: no requirements part before its wheelhouse"
    script = f"set -e\nexport PIP_NO_CACHE_DIR=1\n{part.group(1)}\n" \
             f"'{sys.executable}' -m pip cache dir"
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "AUTOKFP_PIP_CACHE"})
    assert result.returncode == 0 and result.stdout.strip() == "/root/.cache/pip", (
        result.stdout + result.stderr)
    steps = [s for s in _instructions(DOCKERFILE.read_text(encoding="utf-8"))
             if s.endswith("install.sh requirements")]
    assert steps and all("--mount=type=cache,target=/root/.cache/pip" in s for s in steps)


def _probe_wheel(folder: Path, name: str, version: str) -> Path:
    """A tiny pure-Python wheel: one module, its metadata and RECORD."""
    import zipfile

    dist = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}.py", f"VERSION = {version!r}\n")
        wheel.writestr(f"{dist}/METADATA",
                       f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist}/RECORD", "")
    return path


def test_the_install_step_keeps_its_wheels_and_installs_from_them_without_the_index(tmp_path):
    """The pip downloads cached between builds: images/install.sh's requirements step, run
    on the host in a venv of its own against a local index (an HTTP server, counting what it
    is asked for), fetches the pinned wheel into the wheelhouse in its cache folder; run
    again into a new venv with the same cache and the index gone, it installs from the
    wheelhouse alone; with an empty cache and the index gone it fails (so the second run did
    not reach an index some other way). The constraints pick the version: the index holds
    two, the step installs the pinned one."""
    import http.server
    import subprocess
    import threading

    index = tmp_path / "index"
    files = index / "simple" / "autokfp-probe"
    files.mkdir(parents=True)
    for version in ("1.0", "2.0"):
        _probe_wheel(files, "autokfp_probe", version)
    (files / "index.html").write_text("".join(
        f'<a href="{p.name}">{p.name}</a>\n' for p in sorted(files.glob("*.whl"))))
    asked: list[str] = []

    class Index(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(index), **kwargs)

        def do_GET(self):  # noqa: N802 (http.server's name)
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    build = tmp_path / "build"
    build.mkdir()
    pip_version = subprocess.run([sys.executable, "-m", "pip", "--version"], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
    (build / "requirements.txt").write_text("autokfp-probe\n")
    (build / "constraints.txt").write_text(f"autokfp-probe==1.0\npip=={pip_version}\n")

    def install(cache: Path, venv: Path) -> subprocess.CompletedProcess:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        # the venv gets this interpreter's pip (the version the constraints pin)
        site = subprocess.run([str(venv / "bin" / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        import pip
        (Path(site) / "host-pip.pth").write_text(str(Path(pip.__file__).parents[1]) + "\n")
        (venv / "bin" / "pip").write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
        (venv / "bin" / "pip").chmod(0o755)
        env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
               "AUTOKFP_BUILD_DIR": str(build), "AUTOKFP_PIP_CACHE": str(cache),
               "PIP_INDEX_URL": f"http://127.0.0.1:{server.server_port}/simple",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1",
               "PIP_RETRIES": "0", "PIP_TIMEOUT": "5", "PIP_CONFIG_FILE": os.devnull}
        return subprocess.run(["sh", str(INSTALL), "requirements"], env=env,
                              capture_output=True, text=True, timeout=300)

    def installed(venv: Path) -> str:
        return subprocess.run([str(venv / "bin" / "python"), "-c",
                               "import autokfp_probe; print(autokfp_probe.VERSION)"],
                              capture_output=True, text=True).stdout.strip()

    cache = tmp_path / "cache"
    try:
        first = install(cache, tmp_path / "venv1")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert installed(tmp_path / "venv1") == "1.0"
        assert any(p.endswith(".whl") for p in asked), asked  # fetched from the index
        assert [p.name for p in (cache / "wheelhouse").iterdir()] == [
            "autokfp_probe-1.0-py3-none-any.whl"]
    finally:
        server.shutdown()
        server.server_close()
    asked.clear()
    second = install(cache, tmp_path / "venv2")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "from the wheelhouse alone (no index)" in second.stdout, second.stdout[-3000:]
    assert installed(tmp_path / "venv2") == "1.0" and not asked
    cold = install(tmp_path / "empty-cache", tmp_path / "venv3")
    assert cold.returncode != 0 and installed(tmp_path / "venv3") == "", cold.stdout[-3000:]


def test_dockerignore_lets_in_only_what_the_images_copy():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert set(lines[1:]) == {"!dist/autokfp-*.whl", "!pyproject.toml", "!constraints.txt",
                              "!images/requirements.py", "!images/install.sh"}


def test_a_documented_model_uri_is_one_the_predictor_reads():
    """Issue 12: the docs named MODEL_URI while the predictor read only --model_dir. The
    predictor now reads it (tests/serving/test_model_uri.py fetches and serves through it);
    the docs may name it only while it does."""
    entry = (ROOT / "autokfp" / "serving" / "__main__.py").read_text(encoding="utf-8")
    reads = 'os.environ.get("MODEL_URI")' in entry and '"--model_uri"' in entry
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "images").rglob("*")]:
        if path.is_file() and "MODEL_URI" in path.read_text(encoding="utf-8", errors="replace"):
            assert reads, f"{path} names MODEL_URI, which autokfp.serving does not read"


@pytest.mark.parametrize(("args", "word"), [(["--accelerator", "tpu"], "gpu or cpu"),
                                            (["--base", "alpine"], "auto, pull or debian")])
def test_build_script_rejects_unknown_choices(args, word):
    import subprocess

    result = subprocess.run(["bash", str(ROOT / "scripts" / "build_images.sh"), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and word in result.stderr, result.stderr


def test_ci_runs_the_cluster_in_a_box_when_docker_starts_and_says_so_when_not():
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert text.index("make test PYTEST_ARGS") < text.index("make test-cluster PYTEST_ARGS")
    # one apt helper installs Docker (and PostgreSQL, before make test) when missing
    assert 'apt-get install -y -qq "$@"' in text
    assert "apt_install docker.io debootstrap" in text
    assert text.index("ensure_postgres\nmake test") < text.index("make test PYTEST_ARGS")
    assert "make test-cluster SKIPPED" in text  # loud, not silent


def test_the_kserve_stand_ins_follow_the_locked_kserve():
    """The cluster in a box runs KServe's storage initializer code (kserve-storage, in a venv
    of its own) and a stand-in for KServe's agent (its image cannot be pulled here), both of
    the kserve release the lock pins: a lock that moves kserve fails here until the agent's
    Go source is read again and both are moved with it."""
    kserve = _pins()["kserve"]
    agent = (ROOT / "tests" / "cluster" / "kserve_agent.py").read_text(encoding="utf-8")
    checked = re.search(r'^LOCKED_KSERVE = "([^"]+)"$', agent, re.MULTILINE)
    assert checked and checked.group(1) == kserve, (checked and checked.group(1), kserve)
    script = (ROOT / "scripts" / "test_cluster.sh").read_text(encoding="utf-8")
    storage = set(re.findall(r"kserve-storage[-=]+(\d[\w.]*)", script))
    assert storage == {kserve}, storage


def _image_tag_check() -> str:
    """The command each image's build runs to check its tag against its installed code."""
    checks = re.findall(r'(python -c "[^"]*image_tag\(\)[^"]*" "\$\{IMAGE_TAG\}")',
                        _dockerfile())
    assert len(checks) == 2, checks  # the engine's stage (runtime, training) and serving's
    assert checks[0] == checks[1]
    return checks[0]


def test_an_image_build_fails_unless_its_tag_names_the_code_it_installed(tmp_path):
    """The tag a compiled pipeline names (settings.image_tag: version and code fingerprint)
    is the tag the build gives, and the build's own check passes only when the code
    installed in the image gives that tag: a tag naming other code (the old version-only
    0.1.0, another commit's) stops the build with both tags in the message."""
    import subprocess

    from autokfp import __version__
    from autokfp.settings import image_tag

    stages = _stages(_dockerfile())
    for stage in ("engine", "serving"):
        assert 'ARG IMAGE_TAG=""' in stages[stage], stage
        run = next(s for s in stages[stage] if "install.sh wheel" in s)
        assert "image_tag()" in run, stage  # in the wheel's own step, after the install
    script = (ROOT / "scripts" / "build_images.sh").read_text(encoding="utf-8")
    assert '--build-arg "IMAGE_TAG=$TAG"' in script
    check = _image_tag_check().replace("python -c", f"{sys.executable} -c", 1)
    # the check as the build runs it, here on this checkout's code (PYTHONPATH) instead of the
    # image's site-packages
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    right = subprocess.run(["sh", "-c", check], env={**env, "IMAGE_TAG": image_tag()},
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert right.returncode == 0, right.stderr
    assert f"image tag: {image_tag()}" in right.stdout
    for wrong in (__version__, f"{__version__}-0123456789ab", ""):
        result = subprocess.run(["sh", "-c", check], env={**env, "IMAGE_TAG": wrong},
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 1, wrong
        assert f"IMAGE_TAG is {wrong!r} but the code in this image gives {image_tag()!r}" in (
            result.stderr), result.stderr
