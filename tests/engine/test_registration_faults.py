"""Fault injection in registration: a crash part-way leaves a version that lists as
incomplete (never like any other), and the next registration of the package redoes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from autokfp.edge.cli import app
from autokfp.modeling import registry
from autokfp.settings import Settings

NAME = "faulty"
runner = CliRunner()


class InjectedCrash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith(("MLFLOW_", "AUTOKFP_"))]:
        del os.environ[name]
    root = tmp_path_factory.mktemp("registration-faults")
    os.environ["AUTOKFP_HOME"] = str(root / "home")
    settings = Settings.from_env()
    yield settings, root
    os.environ.clear()
    os.environ.update(saved)


def _package(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "weights.txt").write_text(f"{folder.name}\n")
    return folder


def _register(settings, folder, name=NAME):
    return registry.register_model(folder, name, {"test_auc": 0.8}, {"engine": "test"},
                                   {"engine": "test", "primary_metric": "auc"}, promote=True,
                                   decision="first model", compared_champion=None,
                                   settings=settings)


# each point is a call the registration makes after the version exists
CRASH_POINTS = ["set_model_version_tag", "set_registered_model_alias"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_during_registration_is_marked_then_redone(home, monkeypatch, point):
    settings, root = home
    package = _package(root / f"package-{point}")
    real = getattr(MlflowClient, point)

    def crash(self, *args, **kwargs):
        raise InjectedCrash(f"injected crash in {point}")

    monkeypatch.setattr(MlflowClient, point, crash)
    name = f"{NAME}-{point.replace('_', '-')}"
    with pytest.raises(InjectedCrash):
        _register(settings, package, name)
    monkeypatch.setattr(MlflowClient, point, real)

    (model,) = [m for m in registry.list_models(settings) if m["name"] == name]
    half = model["versions"][0]
    assert half["state"] == "incomplete"
    assert "champion" not in half["aliases"] or point != "set_model_version_tag"
    listed = runner.invoke(app, ["models", "--home", str(settings.home)], env={"COLUMNS": "250"})
    assert f"{half['version']} (incomplete: registration interrupted" in listed.output

    redone = _register(settings, package, name)

    assert redone.reused is False and redone.promoted is True
    (model,) = [m for m in registry.list_models(settings) if m["name"] == name]
    versions = {v["version"]: v for v in model["versions"]}
    assert half["version"] not in versions  # the half-registered version is gone
    assert versions[redone.version]["state"] == "complete"
    assert versions[redone.version]["decision"] == "first model"
    assert model["aliases"]["champion"] == redone.version
    assert all(v["state"] == "complete" for v in versions.values())


def test_a_complete_version_is_reused_not_redone(home):
    settings, root = home
    package = _package(root / "package-complete")
    first = _register(settings, package)
    again = _register(settings, package)
    assert again.reused is True and again.version == first.version
