"""The demo: example data plus a run config that points at it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from autokfp.config import RunConfig, load_config
from autokfp.examples.churn import DEFAULT_SEED, ExampleData, write_example_data


def example_config_text() -> str:
    """The bundled example run config (``autokfp/examples/churn.yaml``)."""
    return resources.files("autokfp.examples").joinpath("churn.yaml").read_text(encoding="utf-8")


def prepare_demo(folder: Path, rows: int = 6000, budget: int = 120,
                 seed: int = DEFAULT_SEED) -> tuple[RunConfig, ExampleData]:
    """Write the example data and ``churn.yaml`` into ``folder``; return the loaded config."""
    folder = Path(folder)
    data = write_example_data(folder, n_rows=rows, seed=seed)
    config = yaml.safe_load(example_config_text())
    config["budget"]["max_runtime_secs"] = budget
    path = folder / "churn.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return load_config(path), data
