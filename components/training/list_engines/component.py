"""KFP component: the engines to train, read from the config (drives the training fan-out)."""

from kfp import dsl

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def list_engines(
    engines: str = "from config",
    budget_seconds: int = -1,
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> list:
    """List the training engines the config names, for ``dsl.ParallelFor`` over ``train_model``.

    Each item names an engine and holds the settings its training task reads (budget, the
    engine's own settings, primary metric, calibration) and nothing else, so a training
    task's cache key changes only when those do. The config is validated on the way: an
    engine that is not installed in the image (or whose settings are invalid) fails here,
    before any training starts, with the names of the registered engines.

    Usable alone: ``list_engines(engines="h2o,autokeras", budget_seconds=300)`` (no run
    config: each engine with its default settings).

    Args:
        engines: Comma-separated engines that compete, e.g. "h2o,autokeras". "from config":
            the config's ``engines`` (without a config: the default engines, h2o and
            autokeras).
        budget_seconds: Training time of each engine, e.g. 600; -1: the config's
            ``budget.max_runtime_secs`` (default 120).
        config: Optional: the run configuration (``engines``: name -> settings; autokfp's
            pipeline passes the resolved one); the inputs above override it.

    Returns:
        One item per engine, in the config's order: ``{"engine": "h2o", "settings": {...}}``.

    Raises:
        ConfigError: an unknown engine or an invalid engine setting.

    Example:
        >>> engines = list_engines(config=cfg)  # or, alone: list_engines(engines="h2o")
        >>> with dsl.ParallelFor(engines.output) as item:
        ...     t = train_model(config=item.settings, engine=item.engine,
        ...                     train=f.outputs["train"], plan=f.outputs["plan"])
    """
    from autokfp.steps.form import engines_config
    from autokfp.steps.list_engines import list_engines as step

    return step(engines_config(config, engines=engines, budget_seconds=budget_seconds))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(list_engines, "list_engines.yaml")
