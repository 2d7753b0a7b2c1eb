"""The whole run config: ``RunConfig``, parsing with one clear error listing every bad field,
loading a YAML file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from autokfp.config.base import NAME_PATTERN
from autokfp.config.catalog import CatalogSpec
from autokfp.config.engines import WithEngines, _default_engines, _move_legacy_engine_settings
from autokfp.config.governance import GovernanceSpec
from autokfp.config.monitoring import MonitoringSpec
from autokfp.config.quality import QualitySpec
from autokfp.config.serving import DeploySpec
from autokfp.config.sources import FolderSource, GcsSource, S3Source, Source, SqlSource
from autokfp.config.training import (
    BudgetSpec,
    FeatureSpec,
    SelectionSpec,
    SplitSpec,
    TrainingSettings,
    TrainingSpec,
)
from autokfp.errors import ConfigError


def _source_for(location: str, taken: list[str]) -> str:
    """A source (named apart from ``taken``) and a training.dataset that name ``location``
    (a path or URI), as YAML."""
    scheme, _, rest = location.partition("://")
    if scheme == "file":  # file:///x/y.parquet is the local path /x/y.parquet
        location, rest = rest, ""
    base = "lake" if rest else "data"
    name = next(n for n in (base, *(f"{base}{i}" for i in range(2, len(taken) + 3)))
                if n not in taken)
    if rest and scheme in ("gs", "s3", "minio"):
        bucket, _, key = rest.partition("/")
        kind = "gcs" if scheme == "gs" else "s3"
        return (f"sources: [{{name: {name}, kind: {kind}, uri: '{scheme}://{bucket}'}}] and "
                f"training.dataset: {name}/{key}")
    if rest:
        return "a sql source with that url and training.dataset: <source>/<table>"
    path = Path(location).expanduser()
    return (f"sources: [{{name: {name}, kind: folder, path: '{path.parent}'}}] and "
            f"training.dataset: {name}/{path.name}")


class RunConfig(WithEngines):
    """A complete, validated run configuration."""

    name: str = Field(pattern=NAME_PATTERN, description="model name in the registry (lowercase, digits, '-')")
    sources: list[Source] = Field(min_length=1)
    training: TrainingSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    engines: dict[str, Any] = Field(
        default_factory=_default_engines, min_length=1,
        description="the training engines whose leaders compete, each with its own settings "
                    "(engines.<name>: {...}; a list of names takes the defaults); the "
                    "pipeline trains one candidate per engine")
    governance: GovernanceSpec = Field(default_factory=GovernanceSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    catalog: CatalogSpec = Field(default_factory=CatalogSpec)

    @model_validator(mode="after")
    def _dataset_names_a_source(self) -> RunConfig:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicates)}")
        dataset = self.training.dataset
        source = dataset.split("/", 1)[0]
        if source not in names:
            shape = ("<source>/<table or file path>, the name of one of the config's sources "
                     f"({', '.join(names)}) then the table or the file's path inside it, e.g. "
                     f"{names[0]}/customers.parquet")
            if not source or "://" in dataset or dataset.startswith("~"):
                # a path or URI (what the pipelines' run form takes), not the config's form
                raise ValueError(
                    f"training.dataset '{dataset}' is a path or URI; in a config it is {shape}. "
                    f"Add a source for where it is, e.g. {_source_for(dataset, names)}")
            raise ValueError(f"training.dataset '{dataset}' names source '{source}', which is "
                             f"not in sources; it is {shape}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _legacy_layout(cls, data: Any) -> Any:
        return _move_legacy_engine_settings(data)


    @property
    def model_name(self) -> str:
        return self.name

    def source(self, name: str) -> FolderSource | GcsSource | S3Source | SqlSource:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(f"no source named '{name}' in the config (have: {[s.name for s in self.sources]})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (what pipelines receive as their ``config`` parameter)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def training_settings(self, engine: str | None = None) -> TrainingSettings:
        """The part of the config a training task reads (its cache key, and nothing else);
        with ``engine``, that engine's settings only."""
        engines = self.engines if engine is None else {engine: self.engines[engine]}
        return TrainingSettings(budget=self.budget, engines=engines,
                                primary_metric=self.selection.primary_metric,
                                calibration=self.training.calibration,
                                h2o_cluster=self.training.h2o_cluster)


def parse_training_settings(data: Any, origin: str = "training settings") -> TrainingSettings:
    """A training task's settings from a whole run config (dict or RunConfig) or from
    ``RunConfig.training_settings().to_dict()``; raise ConfigError listing every bad field."""
    if isinstance(data, TrainingSettings):
        return data
    if isinstance(data, str):
        # kfp.local 2.17 hands a task's dict output to a task inside a ParallelFor as its
        # JSON text (the cluster passes the STRUCT the spec declares)
        import json

        try:
            data = json.loads(data)
        except ValueError:
            raise ConfigError(f"{origin}: expected a mapping, got text that is not JSON") from None
    if isinstance(data, RunConfig):
        return data.training_settings()
    if isinstance(data, dict) and "sources" in data:
        return parse_config(data, origin=origin).training_settings()
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping, got {type(data).__name__}")
    try:
        return TrainingSettings.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, TrainingSettings) for e in exc.errors()[:MAX_LISTED_ERRORS]]
        listing = "\n  - ".join(line[:500] for line in lines)
        raise ConfigError(f"{origin} has {exc.error_count()} invalid setting(s):\n  - {listing}") from None


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in error["loc"] if not _is_union_tag(p))
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, error["loc"][:-1])
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"{loc}: unknown setting{hint}"
    if kind == "missing":
        return f"{loc}: required setting is missing"
    if kind == "union_tag_invalid":
        return f"{loc or 'sources[]'}.kind: must be one of 'folder', 'gcs', 's3', 'sql'"
    if kind == "union_tag_not_found":
        return f"{loc}: every source needs a kind: 'folder', 'gcs', 's3' or 'sql'"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind in _BOUND_ERRORS:
        message += _allowed_range(model, tuple(error["loc"]))
    return f"{loc or '<top level>'}: {message}"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {"folder", "gcs", "s3", "sql"}


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = model
    kinds = {"folder": FolderSource, "gcs": GcsSource, "s3": S3Source, "sql": SqlSource}
    for part in loc:
        if isinstance(part, int):
            continue
        if part in kinds:
            current = kinds[part]
            continue
        field = (current.model_fields.get(part)
                 if isinstance(current, type) and issubclass(current, BaseModel) else None)
        if field is None:
            return None
        annotation = field.annotation
        candidate = getattr(annotation, "__args__", (annotation,))
        nested = [c for c in candidate if isinstance(c, type) and issubclass(c, BaseModel)]
        # list[Source] has no model directly; the union tag that follows picks it
        current = nested[0] if nested else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current = _model_at(model, loc)
    return [f.alias or n for n, f in current.model_fields.items()] if current else []


_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _allowed_range(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """' (allowed: 10 to 86400)' for a number field with both bounds, else ''."""
    parent = _model_at(model, loc[:-1]) if loc else None
    field = parent.model_fields.get(str(loc[-1])) if parent else None
    if field is None:
        return ""
    low = high = None
    for item in field.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
    if low is None or high is None:
        return ""
    return f" (allowed: {low} to {high})"


def parse_config(data: Any, origin: str = "config") -> RunConfig:
    """Validate a mapping into a RunConfig; raise ConfigError listing every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings at the top level, got {type(data).__name__}")
    if len(data) > MAX_TOP_LEVEL_KEYS:
        raise ConfigError(f"{origin} has {len(data)} top-level settings; a run config has at most "
                          f"{MAX_TOP_LEVEL_KEYS} (name, sources, training, budget...): it is not a "
                          "run config, or was generated wrongly")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        count = exc.error_count()
        lines = [_describe(e, RunConfig) for e in exc.errors()[:MAX_LISTED_ERRORS]]
        if count > len(lines):
            lines.append(f"... and {count - len(lines)} more")
        listing = "\n  - ".join(line[:500] for line in lines)
        raise ConfigError(f"{origin} has {count} invalid setting(s):\n  - {listing}") from None


# Each pipeline task receives the whole config on its command line, and Linux caps one
# argument at 128 KiB (MAX_ARG_STRLEN); larger configs are refused here, before any step.
MAX_CONFIG_JSON_BYTES = 96 * 1024


MAX_CONFIG_FILE_BYTES = 1024 * 1024


MAX_TOP_LEVEL_KEYS = 100


MAX_LISTED_ERRORS = 20


def check_config_size(config: RunConfig, origin: str) -> None:
    """Refuse a config too large to travel to the pipeline's tasks, naming the largest parts."""
    import json

    data = config.to_dict()
    size = len(json.dumps(data, default=str).encode("utf-8"))
    if size <= MAX_CONFIG_JSON_BYTES:
        return
    parts = sorted(((len(json.dumps(v, default=str)), k) for k, v in data.items()), reverse=True)
    largest = ", ".join(f"{k} ({n // 1024} KiB)" for n, k in parts[:3])
    raise ConfigError(f"{origin} is {size // 1024} KiB as JSON; a run config can be at most "
                      f"{MAX_CONFIG_JSON_BYTES // 1024} KiB because every pipeline task receives "
                      f"it on its command line. The largest parts: {largest}. Shorten long texts "
                      "(e.g. governance intended use) or long lists (categories, ranges), or "
                      "keep them in a file the config points to")


def _resolve_relative(config: RunConfig, base: Path) -> RunConfig:
    for source in config.sources:
        if isinstance(source, FolderSource) and not Path(source.path).is_absolute():
            source.path = str((base / source.path).resolve())
        if isinstance(source, SqlSource) and source.url.startswith("sqlite:///"):
            db_path = source.url[len("sqlite:///"):]
            # a path that starts with ${VAR} is the variable's business (expanded at use)
            if db_path and not db_path.startswith(("/", "${")) and db_path != ":memory:":
                source.url = "sqlite:///" + str((base / db_path).resolve())
    labels = config.monitoring.labels
    if labels.path and "://" not in labels.path and not Path(labels.path).is_absolute():
        labels.path = str((base / labels.path).resolve())
    return config


def load_config(path: str | Path) -> RunConfig:
    """Load and validate a YAML run config. Relative paths are relative to the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist; pass the path of a YAML run config")
    size = path.stat().st_size
    if size > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(f"config file '{path}' is {size // 1024} KiB; a run config is at most "
                          f"{MAX_CONFIG_FILE_BYTES // 1024} KiB (its JSON form at most "
                          f"{MAX_CONFIG_JSON_BYTES // 1024} KiB): is it the right file?")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                          f"on line {line}); save it as UTF-8 (most editors: 'Save with "
                          "encoding')") from None
    if not text.strip():
        raise ConfigError(f"config file '{path}' is empty; see examples/churn.yaml for a complete one")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from None
    if data is None:  # only comments
        raise ConfigError(f"config file '{path}' is empty; see examples/churn.yaml for a complete one")
    config = parse_config(data, origin=str(path))
    check_config_size(config, f"config file '{path}'")
    return _resolve_relative(config, path.parent.resolve())
