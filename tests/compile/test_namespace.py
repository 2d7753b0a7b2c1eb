"""The KFP faces are ``autokfp.components`` and ``autokfp.pipelines``, nothing else.

The repository keeps ``components/`` and ``pipelines/`` at its top level (the design card's
layout); ``autokfp/components`` and ``autokfp/pipelines`` link to them. The wheel therefore
installs one top-level package, ``autokfp``, and a user's project with its own
``components`` or ``pipelines`` package can still import and compile autokfp's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# a line of code, or a line of a notebook's JSON source list
TOP_LEVEL_IMPORT = re.compile(r'^\s*"?(from|import) (components|pipelines)\b', re.MULTILINE)


def _tracked() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [name for name in listed.split("\0") if name and (ROOT / name).exists()]


def test_nothing_imports_the_faces_by_their_folder_names() -> None:
    offenders = [name for name in _tracked() if name.endswith((".py", ".md", ".ipynb"))
                 and not (ROOT / name).is_symlink()
                 and TOP_LEVEL_IMPORT.search((ROOT / name).read_text(encoding="utf-8"))]
    assert offenders == [], "import autokfp.components / autokfp.pipelines instead"


def test_the_faces_are_links_to_the_top_level_folders() -> None:
    for name in ("components", "pipelines"):
        link = ROOT / "autokfp" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve()


def test_a_users_own_components_and_pipelines_packages_do_not_shadow_autokfps(
        tmp_path: Path) -> None:
    for name in ("components", "pipelines"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'user'\nNAME = {name!r}\n")
    script = f"""
components, pipelines = __import__("components"), __import__("pipelines")
from autokfp.components import ALL_COMPONENTS, train_model
from autokfp.edge.compilation import compile_all
from autokfp.pipelines import PIPELINES
written = compile_all({str(tmp_path / "compiled")!r})
assert components.OWNER == pipelines.OWNER == "user", (components, pipelines)
assert len(ALL_COMPONENTS) >= 21 and train_model.name == "train-model"
assert sorted(written) == sorted(PIPELINES), written
print("ok", len(written))
"""
    # the user's folder is the working directory: first on sys.path, as in a notebook
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok ")


def test_the_wheel_installs_only_autokfp(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in _tracked():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_symlink():
            target.symlink_to((ROOT / name).readlink())
        else:
            shutil.copy2(ROOT / name, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("autokfp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"autokfp"}
    folders = sorted(p.parent.relative_to(ROOT).as_posix()
                     for p in (ROOT / "components").glob("*/*/component.py"))
    for folder in folders:  # every component with its generated files
        for file in ("component.py", "metadata.yaml", "README.md"):
            assert f"autokfp/{folder}/{file}" in names
    assert "autokfp/pipelines/training/autonomous_training.py" in names
