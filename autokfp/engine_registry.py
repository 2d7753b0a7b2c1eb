"""Which training engines exist: each engine module registers itself here.

This sits at the foundation (next to the config, which validates ``engines.<name>`` against
each engine's settings model) and imports no engine and no capability: built-in engines
are imported by module name, plugins through their entry points, the first time anyone
asks for an engine.

An engine is one module that defines its ``Engine`` class and its ``EngineSettings`` model
and ends with ``register_engine(EngineSpec(...))``. The registry finds engines in two
places, the first time anyone asks for one:

- the engines shipped with autokfp (``BUILTIN_ENGINES``, imported by module name);
- any installed distribution's entry point in the ``autokfp.engines`` group, e.g. in a
  plugin's ``pyproject.toml``::

      [project.entry-points."autokfp.engines"]
      lightgbm = "my_package.lightgbm_engine"

  Loading the entry point imports the module, which registers the engine.

Nothing here imports an engine statically: the interface (``autokfp.training.base``) and
the engines depend on this module, never the other way round.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from autokfp.errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "autokfp.engines"
# the engines that ship with autokfp, in their default order
BUILTIN_ENGINES = ("autokfp.training.h2o_automl", "autokfp.training.autokeras_engine")


class EngineSettings(BaseModel):
    """Base of every engine's own settings (``engines.<name>`` in the run config).

    Unknown keys are rejected, like everywhere in the config; every field needs a default,
    so ``engines: {<name>: {}}`` (or the name in a list) runs the engine as shipped.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)


@dataclass(frozen=True)
class EngineSpec:
    """Everything the rest of autokfp needs to know about one engine."""

    name: str
    engine: Callable[[Any], Any]
    """The engine class (or factory), called with a validated ``settings`` instance; it
    implements ``autokfp.training.base.Engine``."""
    settings: type[EngineSettings]
    title: str
    """Human name, e.g. "H2O AutoML" (progress lines, reports)."""
    default: bool = False
    """Trained when the config names no engines."""
    extra: str | None = None
    """The pip extra that installs the engine's dependencies (``autokfp[<extra>]``), if any."""
    serving_extra: str | None = None
    """The pip extra the predictor needs to score this engine's models; its InferenceService
    then names the ``autokfp-serving-<extra>`` image (built with that extra). None: the lean
    serving image scores them."""
    legacy_budget_keys: Mapping[str, str] = field(default_factory=dict)
    """Old ``budget.<key>`` names of this engine's settings (deprecated config layout)."""


_ENGINES: dict[str, EngineSpec] = {}
_LOADED = False
_LOCK = threading.RLock()


def register_engine(spec: EngineSpec) -> EngineSpec:
    """Make ``spec`` available under ``spec.name`` (an engine module calls this at import)."""
    if not spec.name or not spec.name.replace("_", "").replace("-", "").isalnum() \
            or spec.name != spec.name.lower():
        raise ValueError(f"engine name '{spec.name}' must be lowercase letters, digits, '-' or '_'")
    with _LOCK:
        known = _ENGINES.get(spec.name)
        if known is not None and known.engine is not spec.engine:
            raise ValueError(f"two engines are registered as '{spec.name}': "
                             f"{_origin(known)} and {_origin(spec)}")
        _ENGINES[spec.name] = spec
    return spec


def _origin(spec: EngineSpec) -> str:
    return f"{getattr(spec.engine, '__module__', '?')}.{getattr(spec.engine, '__qualname__', '?')}"


def _load() -> None:
    global _LOADED
    with _LOCK:
        if _LOADED:
            return
        _LOADED = True  # set first: an engine module that asks the registry must not recurse
        for module in BUILTIN_ENGINES:
            importlib.import_module(module)
        _load_plugins()


def refresh_plugins() -> None:
    """Look for plugin engines again (after installing one into a running process)."""
    _load()
    with _LOCK:
        _load_plugins()


def _load_plugins() -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            log.warning("training engine plugin '%s' (%s) could not be loaded: %s: %s",
                        point.name, point.value, type(exc).__name__, exc)


def engine_specs() -> dict[str, EngineSpec]:
    """Every registered engine by name: built-ins first (in BUILTIN_ENGINES order, whichever
    module was imported first), then plugins in load order."""
    _load()
    with _LOCK:
        specs = list(_ENGINES.values())

    def rank(spec: EngineSpec) -> int:
        module = getattr(spec.engine, "__module__", "")
        return BUILTIN_ENGINES.index(module) if module in BUILTIN_ENGINES else len(BUILTIN_ENGINES)

    return {spec.name: spec for spec in sorted(specs, key=rank)}


def engine_names() -> list[str]:
    return list(engine_specs())


def default_engines() -> list[str]:
    """The engines trained when the config names none."""
    return [name for name, spec in engine_specs().items() if spec.default]


def engine_spec(name: str) -> EngineSpec:
    """The engine registered under ``name``; ConfigError naming the known ones otherwise."""
    specs = engine_specs()
    if name not in specs:
        raise ConfigError(f"unknown training engine '{name}'; available: {', '.join(specs)} "
                          f"(a plugin registers more through the '{ENTRY_POINT_GROUP}' entry "
                          "point group)")
    return specs[name]


def get_engine(name: str, settings: EngineSettings | Mapping[str, Any] | None = None) -> Any:
    """An instance of engine ``name`` with ``settings`` (its settings model, a mapping, or
    None for the defaults). Scoring needs no settings: ``get_engine(name).load_scorer(...)``."""
    spec = engine_spec(name)
    if not isinstance(settings, spec.settings):
        settings = spec.settings.model_validate(dict(settings or {}))
    return spec.engine(settings)


def engine_for_run(name: str, config: Any) -> Any:
    """Engine ``name`` as a run trains or refits with it: its settings from
    ``config.engines[name]``, then the run-level settings it takes, if it takes any
    (``configure_run``: H2O's shared cluster). ``config``: a ``TrainingSettings`` or
    ``RunConfig``."""
    engine = get_engine(name, config.engines[name])
    if hasattr(engine, "configure_run"):
        engine.configure_run(config)
    return engine
