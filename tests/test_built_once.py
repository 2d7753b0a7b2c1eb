"""conftest's ``built_once`` (one build per test run, shared by the xdist workers through a
pickle): a worker killed while writing the pickle, or a pickle cut short, means a new build,
never a crash of the workers that read it."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import built_once

ROOT = Path(__file__).resolve().parents[1]
VALUE = {"rows": list(range(50_000)), "name": "model"}  # about 250 KB pickled


class _Factory:
    """What built_once uses of pytest's tmp_path_factory, inside this test's tmp_path."""

    def __init__(self, root: Path):
        self.base = root / "pytest-7" / "popen-gw0"
        self.base.mkdir(parents=True)

    def getbasetemp(self) -> Path:
        return self.base

    def mktemp(self, name: str) -> Path:
        path = self.base / name
        path.mkdir()
        return path


def _builder(calls: list[Path]):
    def build(folder: Path) -> dict:
        calls.append(folder)
        (folder / "model.bin").write_bytes(b"weights")
        return VALUE

    return build


def test_a_worker_killed_while_writing_the_result_leaves_none_and_the_next_builds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that dies mid-write (here: a file size limit stops its write at 64 KiB, as a
    kill or a full disk would) leaves no readable-looking result; the next worker builds."""
    factory = _Factory(tmp_path)
    child = textwrap.dedent(f"""
        import os, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel kills
        sys.path.insert(0, {str(ROOT)!r})
        os.environ["PYTEST_XDIST_WORKER"] = "gw1"
        from pathlib import Path
        from tests.conftest import built_once
        from tests.test_built_once import _Factory, _builder
        factory = _Factory.__new__(_Factory)
        factory.base = Path({str(factory.base)!r})
        built_once(factory, "killed", _builder([]))
    """)

    def limit_file_size() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    done = subprocess.run([sys.executable, "-c", child], preexec_fn=limit_file_size,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGXFSZ, done.stderr.decode()[-2000:]
    shared = tmp_path / "pytest-7" / "built-once-killed"
    assert not (shared / "result.pickle").exists()  # only a temporary file was cut short
    assert any(p.name.endswith(".tmp") and p.stat().st_size == 64 * 1024
               for p in shared.iterdir())

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    calls: list[Path] = []
    assert built_once(factory, "killed", _builder(calls)) == VALUE
    assert len(calls) == 1 and (calls[0] / "model.bin").read_bytes() == b"weights"
    assert built_once(factory, "killed", _builder(calls)) == VALUE
    assert len(calls) == 1  # the second worker loads the result


def test_a_result_cut_short_is_built_again(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A half-written result (left by a conftest that wrote in place) is built again, with a
    warning naming the file, and replaced by a whole one."""
    factory = _Factory(tmp_path)
    shared = tmp_path / "pytest-7" / "built-once-cut"
    shared.mkdir()
    whole = pickle.dumps(VALUE)
    (shared / "result.pickle").write_bytes(whole[: len(whole) // 2])
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    calls: list[Path] = []
    with pytest.warns(UserWarning, match="result.pickle cannot be read"):
        assert built_once(factory, "cut", _builder(calls)) == VALUE
    assert len(calls) == 1
    assert pickle.loads((shared / "result.pickle").read_bytes()) == VALUE
    assert [p.name for p in shared.iterdir() if p.name.endswith(".tmp")] == []
