"""Each component called as plain Python (``.python_func``) with artifacts in a temp dir.

One file per component, ``tests/components/<stage>/test_<name>.py`` (checked by
tests/compile/test_component_convention.py). Training itself is covered once per session by
the ``trained_package`` fixture; these tests check the faces around it: what each component
writes, returns and logs for the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def artifact(cls: Any, folder: Path, name: str, uri: Path | str | None = None) -> Any:
    """An artifact whose ``.path`` is ``uri`` or ``folder/name`` (what the executor hands a task)."""
    made = cls(name=name, uri=str(uri or folder / name))
    assert Path(made.path) == Path(uri or folder / name)
    return made
