"""How discovery catalogs the sources (autokfp's crawl or DataHub's ingestion)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from autokfp.config.base import _Strict


class CatalogSpec(_Strict):
    """How discovery catalogs the sources.

    ``datahub`` (default since session 10, issue 18): DataHub's own source plugins run
    recipes generated from ``sources`` (or the user's ``recipe``, a YAML file or URI with
    ``${VAR}`` secrets from the environment), and autokfp's aspects are added on top by its
    transformer (``autokfp.catalog.ingest``); a gs:// source without HMAC keys is left to the
    crawl (``ingest.crawl_only``). ``crawl``: autokfp's own crawl alone, which names datasets
    as DataHub's sources do; the cheaper path for a large first crawl.

    Why ``datahub`` is the default (decided on measurements in session 10, docs/catalog.md):
    both paths give the same URNs, field paths and view lineage (test_urn_parity.py,
    test_ingest.py), soft-delete vanished datasets, and pass the discovery tests; issue 18
    asks that discovery run DataHub's ingestion. Since DataHub's file sources stopped
    inferring schemas the crawl has already read, a first run costs about 1.4x the crawl's
    CPU (1.7x before), which is still under the scale issue's first-crawl target of 100
    datasets per CPU-second on a quiet machine (the crawl alone: 117-132); an unchanged
    re-run skips DataHub's sources. Set ``crawl`` where a first crawl's speed matters.
    """

    ingestion: Literal["crawl", "datahub"] = "datahub"
    recipe: str | None = None
    # processes that read and profile the crawl's datasets (``catalog.workers.ReadPool``):
    # ``auto`` as many as the CPUs the process may use (its affinity and cgroup CPU limit),
    # 1 every dataset in the crawl's own process. A crawl of up to 32 datasets to read
    # always reads them in its own process
    workers: int | Literal["auto"] = "auto"
    # ``second``: on the ingestion path, DataHub's SQL source runs first and autokfp's part
    # of a SQL source is a second pass over what it emitted (the tables and their declared
    # columns taken from its SchemaMetadata, autokfp's enumeration and reflection not run;
    # see ``catalog.ingest._second_pass``); ``beside``: autokfp's crawl lists and reflects
    # the tables itself, beside DataHub's source. ``auto`` (the default since session 23):
    # ``second`` for a SQL source with a DDL token (SQLite on a file, PostgreSQL:
    # ``sources.sql.ddl_version``), whose unchanged re-run then skips DataHub's source,
    # ``beside`` for the rest (MySQL, MariaDB, SQL Server, ...: without a token DataHub's
    # source would read every table again on every re-run, 5.2x the CPU at 1,000 tables),
    # and ``beside`` where a second pass cannot apply (a user's recipe, a GMS); the choice
    # is logged and kept in the ingestion's result (``IngestResult.sql_pass``). Measured:
    # docs/catalog.md, "Issue 18, session 22" and "session 23"
    sql_pass: Literal["auto", "beside", "second"] = "auto"

    @field_validator("workers")
    @classmethod
    def _positive_workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"catalog.workers must be 'auto' or a whole number of at least 1 "
                             f"(1 reads every dataset in the crawl's own process), not {value}")
        return value

    @model_validator(mode="after")
    def _recipe_needs_datahub(self) -> CatalogSpec:
        if self.recipe and self.ingestion != "datahub":
            raise ValueError("catalog.recipe is run by DataHub's ingestion: set "
                             "catalog.ingestion: datahub (or drop the recipe)")
        return self
