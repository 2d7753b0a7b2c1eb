"""The demo: example data plus a run config that points at it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from autokfp.config import RunConfig, load_config
from autokfp.config.training import BUDGET_SECONDS_RANGE
from autokfp.errors import ConfigError
from autokfp.examples.churn import DEFAULT_SEED, ExampleData, write_example_data


def example_config_text() -> str:
    """The bundled example run config (``autokfp/examples/churn.yaml``)."""
    return resources.files("autokfp.examples").joinpath("churn.yaml").read_text(encoding="utf-8")


def check_demo_options(rows: int, budget: int) -> None:
    """Refuse ``autokfp demo``'s options out of range, naming the flag as typed and the range
    (before any file is written)."""
    low, high = BUDGET_SECONDS_RANGE
    if not low <= budget <= high:
        raise ConfigError(f"--budget {budget}: each engine's training budget must be {low} to "
                          f"{high:,} seconds (under {low} s no engine finishes a model); "
                          f"e.g. autokfp demo --budget 60")
    minimum = int(yaml.safe_load(example_config_text())["quality"]["min_rows"])
    if rows < minimum:
        raise ConfigError(f"--rows {rows}: the demo needs at least {minimum:,} rows (its config's "
                          f"quality gate, quality.min_rows); e.g. autokfp demo --rows 6000")


def prepare_demo(folder: Path, rows: int = 6000, budget: int = 120,
                 seed: int = DEFAULT_SEED) -> tuple[RunConfig, ExampleData]:
    """Write the example data and ``churn.yaml`` into ``folder``; return the loaded config."""
    check_demo_options(rows, budget)
    folder = Path(folder)
    data = write_example_data(folder, n_rows=rows, seed=seed)
    config = yaml.safe_load(example_config_text())
    config["budget"]["max_runtime_secs"] = budget
    path = folder / "churn.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return load_config(path), data
