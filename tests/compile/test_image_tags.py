"""The images a compiled pipeline names are the ones built from the code that compiled it.

Every build used to tag its images with the package version alone (0.1.0 on every commit),
so a pipeline compiled from newer code ran in an older image of the same tag: a new config
key was rejected by the old image's resolve-config (session 10's cluster run), and a change
that the old code simply lacked would have run unnoticed. The tag is now the version and a
fingerprint of the code (``autokfp.settings.image_tag``); each image's build checks that its
installed code gives that tag (tests/engine/test_images.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autokfp import __version__
from autokfp.settings import DEFAULT_IMAGE_REGISTRY, code_fingerprint, image, image_tag

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory) -> Path:
    """A copy of the autokfp package as the wheel lays it out (components and pipelines
    inside it, not symlinks), in a folder of its own."""
    root = tmp_path_factory.mktemp("code")
    shutil.copytree(ROOT / "autokfp", root / "autokfp", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _edit(package: Path) -> None:
    step = package / "steps" / "resolve_config.py"
    step.write_text(step.read_text(encoding="utf-8") + "\n# a change of the code\n",
                    encoding="utf-8")


def _compiled_images(code_root: Path, out: Path) -> dict[str, str]:
    """Compile autonomous-training with the autokfp under ``code_root`` in a fresh
    interpreter; return each executor's image."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOKFP_")}
    env["PYTHONPATH"] = str(code_root)
    script = ("import sys, autokfp; assert autokfp.__file__.startswith(sys.argv[2]), autokfp.__file__;"
              "from autokfp.edge.scheduling import compile_pipeline;"
              "compile_pipeline('autonomous-training', sys.argv[1])")
    result = subprocess.run([sys.executable, "-c", script, str(out), str(code_root)],
                            cwd=code_root, env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    spec = next(yaml.safe_load_all(out.read_text(encoding="utf-8")))
    return {name: executor["container"]["image"]
            for name, executor in spec["deploymentSpec"]["executors"].items()}


def test_the_fingerprint_is_the_code_the_wheel_ships_and_nothing_else(code_copy) -> None:
    package = code_copy / "autokfp"
    assert code_fingerprint(str(package)) == code_fingerprint()  # a copy: the same code
    # what the wheel does not ship (bytecode, other files) leaves it as it is
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "settings.cpython-311.pyc").write_bytes(b"\0" * 16)
    (package / "notes.txt").write_text("not shipped\n", encoding="utf-8")
    code_fingerprint.cache_clear()
    assert code_fingerprint(str(package)) == code_fingerprint()
    # a module, a component's README or a packaged example changed: another fingerprint
    for changed in (package / "steps" / "discover.py",
                    package / "components" / "data" / "discover" / "README.md",
                    package / "examples" / "churn.yaml"):
        original = changed.read_bytes()
        changed.write_bytes(original + b"\n")
        code_fingerprint.cache_clear()
        assert code_fingerprint(str(package)) != code_fingerprint(), changed
        changed.write_bytes(original)
    # the same bytes under another name are another code too
    moved = package / "steps" / "discover_moved.py"
    shutil.move(package / "steps" / "discover.py", moved)
    code_fingerprint.cache_clear()
    assert code_fingerprint(str(package)) != code_fingerprint()
    shutil.move(moved, package / "steps" / "discover.py")


def test_the_image_tag_is_the_version_and_the_code(monkeypatch) -> None:
    monkeypatch.delenv("AUTOKFP_IMAGE_REGISTRY", raising=False)
    assert image_tag() == f"{__version__.replace('+', '-')}-{code_fingerprint()}"
    assert image_tag("1.2.0+local") == f"1.2.0-local-{code_fingerprint()}"
    assert image("runtime") == f"{DEFAULT_IMAGE_REGISTRY}/autokfp-runtime:{image_tag()}"


def test_a_pipeline_compiled_from_other_code_names_other_images(code_copy, tmp_path,
                                                               monkeypatch) -> None:
    """The same pipeline compiled from code that differs from this checkout's by one line of
    one step: every task names an image whose tag is that code's own, never this checkout's
    (with version-only tags both named the same images, and either ran in the other's)."""
    monkeypatch.delenv("AUTOKFP_IMAGE_REGISTRY", raising=False)
    package = code_copy / "autokfp"
    _edit(package)
    code_fingerprint.cache_clear()
    edited_tag = f"{__version__.replace('+', '-')}-{code_fingerprint(str(package))}"
    assert edited_tag != image_tag()
    compiled = _compiled_images(code_copy, tmp_path / "edited.yaml")
    assert "exec-train-model" in compiled and "exec-resolve-config" in compiled
    for name, ref in compiled.items():
        kind = "training" if name == "exec-train-model" else "runtime"
        assert ref == f"{DEFAULT_IMAGE_REGISTRY}/autokfp-{kind}:{edited_tag}", name
        assert ref != image(kind), name
