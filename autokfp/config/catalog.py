"""How discovery catalogs the sources (autokfp's crawl or DataHub's ingestion)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from autokfp.config.base import _Strict


class CatalogSpec(_Strict):
    """How discovery catalogs the sources.

    ``crawl`` (default): autokfp's own crawl, which names datasets as DataHub's sources do.
    ``datahub``: DataHub's own source plugins run recipes generated from ``sources`` (or the
    user's ``recipe``, a YAML file or URI with ``${VAR}`` secrets from the environment), and
    autokfp's aspects are added on top by its transformer (``autokfp.catalog.ingest``).
    """

    ingestion: Literal["crawl", "datahub"] = "crawl"
    recipe: str | None = None

    @model_validator(mode="after")
    def _recipe_needs_datahub(self) -> CatalogSpec:
        if self.recipe and self.ingestion != "datahub":
            raise ValueError("catalog.recipe is run by DataHub's ingestion: set "
                             "catalog.ingestion: datahub (or drop the recipe)")
        return self
