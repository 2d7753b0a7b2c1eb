"""Loading a package folder skips MLflow's scan of every installed distribution, and still
warns as MLflow does: the same mismatched requirements, the Python version it was saved in,
and the same model (its predictions equal MLflow's own load)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # the session's small trained H2O package


@pytest.fixture
def package(trained_package, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(trained_package.paths.model, folder)
    return folder


def _mismatch_lines(caplog) -> list[str]:
    return [line.strip(" -") for r in caplog.records if "mismatches" in r.getMessage()
            for line in r.getMessage().splitlines()[1:] if line.startswith(" - ")]


def test_a_satisfied_package_loads_without_warnings_and_scores_as_mlflow_loads_it(
        package, trained_package, caplog) -> None:
    import mlflow.pyfunc

    from autokfp.modeling.model_package import load_model_package

    with caplog.at_level(logging.WARNING):
        model = load_model_package(str(package))
    assert [r.getMessage() for r in caplog.records if r.name.startswith("mlflow.pyfunc")] == []
    rows = pd.read_parquet(trained_package.paths.test).head(50)
    expected = mlflow.pyfunc.load_model(str(package)).predict(rows)
    pd.testing.assert_frame_equal(model.predict(rows), expected)


def test_unsatisfied_requirements_and_another_python_warn_like_mlflow(package, caplog) -> None:
    import mlflow.pyfunc
    import yaml

    from autokfp.modeling.model_package import load_model_package

    requirements = package / "requirements.txt"
    requirements.write_text(requirements.read_text().rstrip("\n") + "\npandas<1.0\nno-such-package-xyz==1.0\n"
                            "numpy>=1.0 ; python_version < '3.0'\n")
    mlmodel = yaml.safe_load((package / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["python_version"] = "3.6.0"
    (package / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    with caplog.at_level(logging.WARNING):
        load_model_package(str(package))
    ours = _mismatch_lines(caplog)
    assert any("Python 3.6.0" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        mlflow.pyfunc.load_model(str(package))
    theirs = _mismatch_lines(caplog)
    # the same packages named, with the same installed version and requirement
    assert sorted(ours) == sorted(theirs)
    assert {line.split(" ")[0] for line in ours} == {"pandas", "no-such-package-xyz"}
