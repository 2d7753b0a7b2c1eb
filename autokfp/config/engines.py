"""``engines.<name>``: each engine's own settings, validated with the settings model the engine
registered (``autokfp.engine_registry``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError, field_serializer, field_validator

from autokfp.config.base import _Strict
from autokfp.errors import ConfigError

# one logger for the whole config package (its messages keep their name)
log = logging.getLogger("autokfp.config")


def _default_engines() -> dict[str, Any]:
    from autokfp.engine_registry import default_engines

    return {name: {} for name in default_engines()}


def _validate_engine_settings(name: str, settings: Any) -> Any:
    """``engines.<name>`` -> that engine's own settings model (the engine module owns it)."""
    # The one place the config reaches into the training capability: engines are plug-ins
    # and bring their settings models with them.
    from autokfp.engine_registry import engine_spec

    try:
        spec = engine_spec(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(settings, spec.settings):
        return settings
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ValueError(f"engines.{name} must be a mapping of {spec.title} settings, got "
                         f"{type(settings).__name__}")
    try:
        return spec.settings.model_validate(settings)
    except ValidationError as exc:
        allowed = ", ".join(spec.settings.model_fields)
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in (name, *error["loc"]))
            if error["type"] == "extra_forbidden":
                problems.append(f"{where}: unknown setting (allowed here: {allowed})")
            else:
                problems.append(f"{where}: {error['msg']}")
        raise ValueError("; ".join(problems)) from None


def _engines_from_list(value: Any) -> Any:
    """``engines: [h2o, autokeras]`` -> each engine with its default settings."""
    if isinstance(value, (list, tuple)):
        repeated = sorted({str(v) for v in value if list(value).count(v) > 1})
        if repeated:
            raise ValueError(f"engines must not repeat an engine: {repeated}")
        return {name: {} for name in value}
    return value


def _move_legacy_engine_settings(data: Any) -> Any:
    """Accept the old layout: engine knobs in ``budget`` (``budget.nfolds``,
    ``budget.autokeras_epochs``, ...). Each moves to ``engines.<engine>.<setting>`` (each
    engine declares its old names), with a warning naming the new place; one set in both
    places is an error, and one of an engine that is not configured is dropped."""
    if not isinstance(data, dict) or not isinstance(data.get("budget"), dict):
        return data
    from autokfp.engine_registry import engine_specs

    legacy = {old: (spec.name, new) for spec in engine_specs().values()
              for old, new in spec.legacy_budget_keys.items()}
    found = [key for key in data["budget"] if key in legacy]
    if not found:
        return data
    data = dict(data)
    budget = dict(data["budget"])
    engines = data.get("engines")
    if engines is None:
        engines = _default_engines()
    if isinstance(engines, (list, tuple)):
        engines = {name: {} for name in engines}
    if not isinstance(engines, dict):
        return data  # the engines validator reports the bad value
    engines = {name: dict(settings) if isinstance(settings, dict) else settings
               for name, settings in engines.items()}
    for key in found:
        engine, setting = legacy[key]
        value = budget.pop(key)
        if engine not in engines:
            log.warning("budget.%s is ignored: it is a setting of the %s engine, which is not "
                        "among the configured engines %s", key, engine, list(engines))
            continue
        target = engines[engine]
        if not isinstance(target, dict):
            continue  # the engines validator reports the bad value
        if setting in target:
            raise ValueError(f"budget.{key} and engines.{engine}.{setting} are the same setting; "
                             f"keep only engines.{engine}.{setting}")
        target[setting] = value
        log.warning("budget.%s is deprecated: write it as engines.%s.%s", key, engine, setting)
    data["budget"] = budget
    data["engines"] = engines
    return data


class WithEngines(_Strict):
    """A model with an ``engines`` field (``RunConfig``, ``TrainingSettings``): a list of
    names takes each engine's defaults, each ``engines.<name>`` is validated into that
    engine's settings model and written back as a plain mapping. The subclass declares the
    field itself (its place among the fields is the order they are written in)."""

    if TYPE_CHECKING:
        engines: dict[str, Any]

    @field_validator("engines", mode="before", check_fields=False)
    @classmethod
    def _engine_list(cls, value: Any) -> Any:
        return _engines_from_list(value)

    @field_validator("engines", check_fields=False)
    @classmethod
    def _engine_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {name: _validate_engine_settings(name, settings) for name, settings in value.items()}

    @field_serializer("engines", check_fields=False)
    def _engines_as_mappings(self, engines: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {name: settings.model_dump(mode="json", exclude_none=True)
                for name, settings in engines.items()}

    def engine_names(self) -> list[str]:
        """The configured engines, in the config's order."""
        return list(self.engines)
