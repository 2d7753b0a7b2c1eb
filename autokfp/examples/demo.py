"""The demo: example data plus a run config that points at it."""

from __future__ import annotations

import re
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
    path = folder / "churn.yaml"
    path.write_text(demo_config_text(budget), encoding="utf-8")
    config = load_config(path)
    if config.budget.max_runtime_secs != budget:  # the bundled file's budget line was changed
        raise ConfigError(f"{path}: budget.max_runtime_secs is {config.budget.max_runtime_secs}, "
                          f"not the --budget {budget} asked for (autokfp/examples/churn.yaml's "
                          "'budget:' line is not the one demo_config_text expects)")
    return config, data


_BUDGET_LINE = re.compile(r"^budget: \{max_runtime_secs: \d+\}", re.MULTILINE)


def demo_config_text(budget: int = 120) -> str:
    """The bundled config's text, comments kept, with ``budget`` as each engine's budget."""
    text, count = _BUDGET_LINE.subn(f"budget: {{max_runtime_secs: {int(budget)}}}",
                                    example_config_text())
    if count != 1:
        raise ConfigError("autokfp/examples/churn.yaml has no one-line 'budget: {max_runtime_secs: N}'")
    return text
