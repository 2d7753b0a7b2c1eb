"""The layer contracts name every room of the engine, so a new one cannot slip past them.

`make lint` and `make test` run the contracts themselves (``lint-imports``); this checks
that they cover everything: a room missing from a contract is checked by nothing.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

import tomllib

import autokfp

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _rooms() -> set[str]:
    """``autokfp.<x>`` for every subpackage and module directly under autokfp/."""
    return {f"autokfp.{info.name}" for info in pkgutil.iter_modules(autokfp.__path__)}


def _named(layers: list[str]) -> set[str]:
    return {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}


def test_every_room_sits_on_a_layer_of_the_house() -> None:
    layers = _named(_contracts()["house"]["layers"])
    assert _rooms() - layers == set()
    assert {"autokfp.components", "autokfp.pipelines"} <= layers


def test_every_room_but_the_edge_is_kept_free_of_kfp() -> None:
    sources = set(_contracts()["engine-without-kfp"]["source_modules"])
    assert _rooms() - sources == {"autokfp.edge", "autokfp.components", "autokfp.pipelines"}


def test_components_and_pipelines_may_not_reach_past_the_steps() -> None:
    contracts = _contracts()
    faces = {"autokfp.components", "autokfp.pipelines"}
    below_steps = _rooms() - faces - {"autokfp.edge", "autokfp.steps", "autokfp.settings",
                                      "autokfp.errors"}
    assert below_steps <= set(contracts["components-call-steps"]["forbidden_modules"])
    assert below_steps <= set(contracts["pipelines-assemble-components"]["forbidden_modules"])
    # the capability order covers every capability and the foundation
    assert _rooms() - faces - {"autokfp.edge", "autokfp.steps"} <= _named(
        contracts["capabilities"]["layers"])
