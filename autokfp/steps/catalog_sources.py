"""The `catalog_sources` step: crawl every configured source into the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autokfp.catalog.crawl import catalog_proposals, crawl_sources, render_crawl_html
from autokfp.catalog.datahub import write_metadata
from autokfp.config import RunConfig
from autokfp.steps.io import read_config, write_json, write_text
from autokfp.steps.results import Publication, StepResult, finite_metrics


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


def catalog_sources(config: dict[str, Any] | RunConfig, report_path: str, catalog_path: str,
                    summary_path: str | None = None) -> Catalogued:
    """The discovery pipeline's step: crawl every configured source into the catalog.

    Writes the crawl report as HTML (``report_path``), DataHub proposals for every dataset
    read (``catalog_path``) and, optionally, the report as JSON. Never fails on bad data:
    bad files, tables and sources are in the report.
    """
    cfg = read_config(config)
    report = crawl_sources(cfg, training=cfg.training)
    write_text(report_path, render_crawl_html(report))
    if summary_path:
        write_json(summary_path, report.to_dict())
    write_metadata(catalog_path, catalog_proposals(report))
    counts = report.counts()
    return Catalogued(**{k: counts[k] for k in ("catalogued", "new", "changed", "breaking",
                                                "reused", "failed", "missing", "sources_failed")})
