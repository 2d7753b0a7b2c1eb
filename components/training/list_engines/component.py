"""KFP component: the engines to train, read from the config (drives the training fan-out)."""

from kfp import dsl

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def list_engines(config: dict) -> list:
    """List the training engines the config names, for ``dsl.ParallelFor`` over ``train_model``.

    Each item names an engine and holds the settings its training task reads (budget, the
    engine's own settings, primary metric, calibration) and nothing else, so a training
    task's cache key changes only when those do. The config is validated on the way: an
    engine that is not installed in the image (or whose settings are invalid) fails here,
    before any training starts, with the names of the registered engines.

    Args:
        config: The run configuration (``engines``: name -> settings).

    Returns:
        One item per engine, in the config's order: ``{"engine": "h2o", "settings": {...}}``.

    Raises:
        ConfigError: an unknown engine or an invalid engine setting.

    Example:
        >>> engines = list_engines(config=cfg)
        >>> with dsl.ParallelFor(engines.output) as item:
        ...     t = train_model(config=item.settings, engine=item.engine,
        ...                     train=f.outputs["train"], plan=f.outputs["plan"])
    """
    from autokfp.steps.list_engines import list_engines as step

    return step(config)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(list_engines, "list_engines.yaml")
