"""Components are found by convention, and every one keeps it.

``components/<stage>/<name>/`` holds ``component.py`` (the @dsl.component ``<name>``), the
generated ``metadata.yaml`` and ``README.md``; its unit test is
``tests/components/<stage>/test_<name>.py``, which calls ``<name>.python_func`` itself or
through a fixture of the conftest.py beside it (shared runs: one bias check, one
monitoring chain); its body calls
exactly one step, ``autokfp.steps.<module>``. Nothing lists components by hand, so a new
folder is checked here, compiled alone in test_compile.py and documented by the generator.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from autokfp import components

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = sorted(path for path in (ROOT / "components").glob("*/*")
                 if path.is_dir() and path.name != "__pycache__")


def test_every_folder_is_a_component_and_every_component_is_found() -> None:
    assert [p.name for p in FOLDERS if not (p / "component.py").is_file()] == []
    assert len(components.ALL_COMPONENTS) == len(FOLDERS) >= 21
    found = {c.python_func.__name__ for c in components.ALL_COMPONENTS}
    assert found == {p.name for p in FOLDERS}
    # the monitoring components a hand-kept list used to leave out are there
    assert {c.name for c in components.BY_STAGE["monitoring"]} >= {
        "collect-predictions", "detect-drift", "measure-performance", "detect-anomalies",
        "decide-retraining", "record-retraining", "finalize-monitoring"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_each_folder_keeps_the_convention(folder: Path) -> None:
    name, stage = folder.name, folder.parent.name
    component = getattr(components, name)
    assert {"component.py", "metadata.yaml", "README.md", "__init__.py"} <= {
        p.name for p in folder.iterdir()}
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert meta["name"] == name and meta["stage"] == stage and meta["kfp_name"] == component.name
    assert set(meta["inputs"]) == set(component.component_spec.inputs or {})
    assert set(meta["outputs"]) == set(component.component_spec.outputs or {})
    assert meta["gpu"] == ("/autokfp-training:" in meta["image"])
    importlib.import_module(meta["step"])  # the one step it calls exists

    test = ROOT / "tests" / "components" / stage / f"test_{name}.py"
    assert test.is_file(), f"{name} needs its unit test: {test.relative_to(ROOT)}"
    called = rf"\b{name}\.python_func\("
    sources = [test, test.with_name("conftest.py"), test.parent.parent / "conftest.py"]
    assert any(re.search(called, p.read_text()) for p in sources if p.is_file()), (
        f"{test.relative_to(ROOT)} must call {name}.python_func(...)")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_each_body_imports_only_autokfp_and_the_standard_library(folder: Path) -> None:
    # the body is what KFP copies into the YAML and runs in the image: a user's own top-level
    # ``components`` or ``pipelines`` package must not be able to shadow what it imports
    component = getattr(components, folder.name)
    body = ast.parse(textwrap.dedent(inspect.getsource(component.python_func)))
    imported = {alias.name for node in ast.walk(body) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(body)
                 if isinstance(node, ast.ImportFrom) and node.module}
    roots = {name.split(".")[0] for name in imported}
    assert roots - {"autokfp"} - set(sys.stdlib_module_names) == set(), (
        f"{folder.name}'s body imports {sorted(imported)}")
