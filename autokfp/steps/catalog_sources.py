"""The `catalog_sources` step: crawl every configured source into the catalog."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from autokfp.catalog.crawl import catalog_proposals, crawl_sources, render_crawl_html
from autokfp.catalog.datahub import write_metadata
from autokfp.config import FROM_CONFIG, RunConfig, Source, TrainingSpec, mask_url_password
from autokfp.errors import ConfigError
from autokfp.steps.io import read_config, write_json, write_text
from autokfp.steps.results import Publication, StepResult, finite_metrics

_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")
_BUCKET_KINDS = {"gs": "gcs", "s3": "s3", "minio": "s3"}
LOCATIONS_HELP = ("a gs:// or s3:// prefix (gs://my-bucket/churn), an absolute folder path, or "
                  "a database URL (postgresql://reader:${PG_PASSWORD}@db/crm; #<table> for one "
                  "table)")


@dataclass(frozen=True)
class Catalogued(StepResult):
    """The crawl's counts per dataset status (bad inputs are counted, never fatal)."""

    catalogued: int
    new: int
    changed: int
    breaking: int
    reused: int
    failed: int
    missing: int
    sources_failed: int

    def publication(self) -> Publication:
        counts = finite_metrics(vars(self))
        return Publication(metrics=counts, metadata={"catalog": counts},
                           returns=(self.breaking,))


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", FROM_CONFIG))


def _source_name(location: str, taken: set[str], database: bool = False) -> str:
    """A stable name for the source at ``location`` (its last path part; a database file's
    without its extension): catalogued datasets are ``<source>/<path>``, so the same
    location must keep its name every run."""
    base = location.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    base = base.split(".", 1)[0] if database else base
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", base.split("@")[-1]).strip("-.") or "source"
    name, count = base[:60], 1
    while name in taken:
        count += 1
        name = f"{base[:56]}-{count}"
    return name


def location_source(location: str, taken: set[str],
                    include: list[str] | None = None) -> dict[str, Any]:
    """One crawl location of the discovery run form as a source (see ``LOCATIONS_HELP``)."""
    scheme, _, rest = location.partition("://") if "://" in location else ("", "", location)
    database = scheme.split("+", 1)[0].lower() in _SQL_SCHEMES
    name = _source_name(location, taken, database)
    patterns = {"include": include} if include else {}
    if database:
        url, _, table = location.partition("#")
        return {"name": name, "kind": "sql", "url": url, **({"tables": [table]} if table else {})}
    if scheme in _BUCKET_KINDS and rest.strip("/"):
        return {"name": name, "kind": _BUCKET_KINDS[scheme], "uri": location.rstrip("/"),
                **patterns}
    path = rest if scheme == "file" else location
    if not scheme or scheme == "file":
        if Path(path).is_absolute():
            return {"name": name, "kind": "folder", "path": path, **patterns}
    # masked: an unknown database scheme (snowflake://user:PASSWORD@...) lands here
    raise ConfigError(f"discovery source '{mask_url_password(location)}' is not "
                      f"{LOCATIONS_HELP}")


def crawl_targets(config: dict[str, Any] | RunConfig | None, sources: str = FROM_CONFIG,
                  include: str = FROM_CONFIG) -> tuple[list[Any], TrainingSpec | None]:
    """What the discovery run form asks to crawl: ``sources`` (comma-separated locations)
    replace the config's sources, ``include`` (comma-separated file patterns) applies to
    the folders and buckets among them; the config's training spec tags its target.
    Raises ConfigError naming the bad location or setting."""
    cfg = read_config(config) if config else None
    patterns = None if _unset(include) else [p.strip() for p in include.split(",") if p.strip()]
    if _unset(sources):
        if cfg is None:
            raise ConfigError(f"discovery: no sources: give the locations to crawl ({LOCATIONS_HELP}), "
                              "comma-separated, or a full config")
        return [source.model_copy(update={"include": patterns})
                if patterns is not None and hasattr(source, "include") else source
                for source in cfg.sources], cfg.training
    taken: set[str] = set()
    built = []
    for location in (part.strip() for part in sources.split(",")):
        if location:
            built.append(location_source(location, taken, patterns))
            taken.add(built[-1]["name"])
    if not built:
        raise ConfigError(f"discovery: sources '{sources}' names no location; give {LOCATIONS_HELP}")
    try:
        parsed = TypeAdapter(list[Source]).validate_python(built)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][:1]))}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"discovery: invalid sources ({problems}); give {LOCATIONS_HELP}") from None
    return parsed, cfg.training if cfg is not None else None


def catalog_sources(config: dict[str, Any] | RunConfig | None, report_path: str,
                    catalog_path: str, summary_path: str | None = None,
                    sources: str = FROM_CONFIG, include: str = FROM_CONFIG) -> Catalogued:
    """The discovery pipeline's step: crawl every source into the catalog (``sources`` and
    ``include`` over ``config``: see ``crawl_targets``); with the config's ``catalog.ingestion:
    datahub``, through DataHub's own sources (``catalog.ingest``), as the discover step does.

    Writes the crawl report as HTML (``report_path``), DataHub proposals for every dataset
    read (``catalog_path``) and, optionally, the report as JSON. Never fails on bad data:
    bad files, tables and sources are in the report.
    """
    from autokfp.steps.form import refuse_passwords_in_pod

    crawled, training = crawl_targets(config, sources, include)
    refuse_passwords_in_pod(crawled, "discovery")
    cfg = read_config(config) if config else None
    if cfg is not None and cfg.catalog.ingestion == "datahub":
        # DataHub's own sources run the recipes (generated for the sources crawled here, or
        # the config's catalog.recipe), autokfp's aspects on top, as the discover step does
        from autokfp.catalog.ingest import ingest

        report = ingest(cfg.model_copy(update={"sources": list(crawled)}),
                        recipe=cfg.catalog.recipe).report
    else:
        report = crawl_sources(crawled, training=training,
                               workers=cfg.catalog.workers if cfg is not None else None)
    write_text(report_path, render_crawl_html(report))
    if summary_path:
        write_json(summary_path, report.to_dict())
    write_metadata(catalog_path, catalog_proposals(report))
    counts = report.counts()
    return Catalogued(**{k: counts[k] for k in ("catalogued", "new", "changed", "breaking",
                                                "reused", "failed", "missing", "sources_failed")})
