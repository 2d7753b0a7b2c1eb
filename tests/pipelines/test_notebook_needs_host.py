"""notebooks/quickstart.ipynb without KFP_HOST, outside a Kubeflow pod: its first code cell
stops with one message saying what to set (no traceback, nothing run after it)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def test_without_kfp_host_the_first_cell_says_to_set_it(tmp_path, monkeypatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    import nbformat
    from nbclient.exceptions import CellExecutionError

    for name in ("KFP_HOST", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path / "work"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert "It needs `KFP_HOST`" in notebook.cells[0].source  # said before any code runs
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError) as raised:
        client.execute()
    code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    first = notebook.cells[code[0]]
    (error,) = [o for o in first.outputs if o.output_type == "error"]
    assert error.ename == "KfpHostMissing"
    assert "KFP_HOST is not set" in error.evalue and "export KFP_HOST=" in error.evalue
    shown = "\n".join(error.traceback)  # what the notebook displays
    assert shown.startswith("KfpHostMissing: KFP_HOST is not set"), shown
    assert "Traceback" not in shown and "File " not in shown and "\n" not in shown.strip()
    assert all(not notebook.cells[i].get("outputs") for i in code[1:])  # nothing else ran
    assert not (tmp_path / "work").exists()  # no example data written
    assert "KfpHostMissing" in str(raised.value)


def test_inside_a_kubeflow_pod_kfp_host_may_stay_unset(tmp_path, monkeypatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    monkeypatch.delenv("KFP_HOST", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # what the kubelet sets in a pod
    monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path / "work"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    notebook.cells = notebook.cells[:code[0] + 1]  # the settings cell alone
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert not [o for o in notebook.cells[code[0]].outputs if o.output_type == "error"]
