"""Where a catalogued dataset lives: a DataHub dataset URN -> the data a run can read.

A training run can start from a dataset picked in DataHub: its URN
(``urn:li:dataset:(urn:li:dataPlatform:s3,lake/churn/customers.parquet,PROD)``). The URN
names the dataset, not always where it is (a SQL table's URN has no server), so it is
looked up in the catalog, in this order:

1. autokfp's own catalog index in the artifact store (what discovery crawled: each
   dataset's URN, its ``<source>/<table or file>`` id and location);
2. DataHub: the GMS when ``DATAHUB_GMS_URL`` is set, else the local DataHub Lite. A dataset
   autokfp published carries its location as a custom property; one that DataHub's own
   ingestion wrote is located from its URN when the platform is a file or object store.

A URN that none of them knows, a dataset marked removed, or a database table whose server
the catalog cannot give (credentials are never catalogued) raises a ConfigError that says
what to do instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from autokfp.catalog.datahub import gms_settings, read_lite
from autokfp.catalog.store import CatalogStore
from autokfp.errors import ConfigError
from autokfp.settings import Settings

log = logging.getLogger(__name__)

DATASET_URN_PREFIX = "urn:li:dataset:"
# platforms whose URN name is the object's own path: DataHub's s3/gcs/file sources
_OBJECT_PLATFORMS = {"s3": "s3://", "gcs": "gs://", "file": "/"}
_URI_SCHEMES = ("gs", "s3", "minio", "file")


@dataclass(frozen=True)
class CatalogedDataset:
    """A dataset found in the catalog, and what a run's ``dataset`` can be set to."""

    urn: str
    platform: str
    found_in: str  # where it was found, for messages and logs
    location: str | None = None  # a gs://, s3:// URI or absolute path of one file
    dataset_id: str | None = None  # <source>/<table or file>, when autokfp discovered it
    database: str | None = None  # a SQL table's database URL (credentials masked)

    def run_dataset(self, source_names: set[str]) -> str:
        """The run form's ``dataset`` for this dataset, given the config's source names.

        The config's own source comes first (it holds the credentials a database needs);
        else a file's location; else a database table in a database that needs no password.
        """
        if self.dataset_id and self.dataset_id.split("/", 1)[0] in source_names:
            return self.dataset_id
        if self.location:
            return self.location
        if self.database and self.dataset_id and "***" not in self.database:
            return f"{self.database}#{self.dataset_id.split('/', 1)[1]}"
        source, _, table = (self.dataset_id or "/").partition("/")
        where = f" ({self.database})" if self.database else ""
        raise ConfigError(
            f"dataset {self.urn} is {'table ' + repr(table) if table else 'a table'} of a "
            f"database{where} that the catalog ({self.found_in}) cannot open: its credentials "
            "are never catalogued. Add the database to config's sources"
            + (f" as '{source}'" if source else "")
            + " with its password as ${VAR} (a Secret), then give this URN again or "
            + (f"'{source}/{table}'" if source and table else "<source>/<table>"))


def source_names(config: dict[str, Any] | None) -> set[str]:
    """The names of the sources of a run config given as a dict (before it is validated)."""
    sources = (config or {}).get("sources")
    if not isinstance(sources, list):
        return set()
    return {s["name"] for s in sources if isinstance(s, dict) and isinstance(s.get("name"), str)}


def check_same_dataset(source: Any, relative: str, urn: str) -> None:
    """The dataset a URN was resolved to is the one DataHub names by it: a config source of
    the same name elsewhere (another bucket, another database) must not stand in for it."""
    from autokfp.catalog.sources import open_source

    named = open_source(source).urn(relative)
    if named != urn:
        raise ConfigError(
            f"dataset {urn}: config's source '{source.name}' holds a different dataset under "
            f"'{relative}' ({named}); rename that source in config, or give the dataset as a "
            "URI")


def is_dataset_urn(text: str) -> bool:
    return text.strip().startswith(DATASET_URN_PREFIX)


def parse_dataset_urn(urn: str) -> tuple[str, str]:
    """(platform, name) of a dataset URN; ConfigError when it is not one."""
    from datahub.utilities.urns.dataset_urn import DatasetUrn

    try:
        parsed = DatasetUrn.from_string(urn.strip())
    except Exception as exc:
        raise ConfigError(
            f"dataset '{urn}' is not a DataHub dataset URN ({exc}); a URN looks like "
            "urn:li:dataset:(urn:li:dataPlatform:s3,my-bucket/churn/customers.parquet,PROD)"
        ) from None
    return parsed.get_data_platform_urn().platform_name, parsed.name


def locate_dataset(urn: str, settings: Settings | None = None) -> CatalogedDataset:
    """Find ``urn`` in the catalog (see the module's docstring).

    Raises:
        ConfigError: not a dataset URN, unknown to every catalog, removed, or found in more
            than one place in autokfp's index (the message names each).
    """
    urn = urn.strip()
    platform, name = parse_dataset_urn(urn)
    settings = settings or Settings.from_env()
    looked: list[str] = []
    found = _from_index(urn, platform, settings, looked)
    if found is None:
        found = _from_datahub(urn, platform, name, settings, looked)
    if found is None:
        raise ConfigError(
            f"dataset {urn} is not in the catalog (looked in {'; '.join(looked)}). Crawl its "
            "source first (the discovery pipeline, or 'autokfp discover CONFIG'), check "
            "the URN in DataHub, or give the dataset as a gs:// or s3:// URI")
    log.info("dataset %s found in %s", urn, found.found_in)
    return found


def _from_index(urn: str, platform: str, settings: Settings,
                looked: list[str]) -> CatalogedDataset | None:
    store = CatalogStore(settings)
    where = f"autokfp's catalog index at {store.uri('index.json')}"
    looked.append(where)
    matches = [entry for entry in store.load_index().values() if entry.get("urn") == urn]
    if not matches:
        return None
    if len(matches) > 1:
        ids = ", ".join(sorted(str(e.get("dataset_id")) for e in matches))
        raise ConfigError(f"dataset {urn} names {len(matches)} catalogued datasets ({ids}): "
                          "DataHub names a SQLite table by its table name alone. Give one of "
                          "them as <source>/<table> with its source in config")
    entry = matches[0]
    if entry.get("status") == "missing":
        raise ConfigError(f"dataset {urn} ({entry.get('dataset_id')}) was gone from its source "
                          f"at the last crawl (missing since {entry.get('missing_since')}); "
                          "crawl again once it is back, or choose another dataset")
    return _cataloged(urn, platform, where, entry.get("dataset_id"), entry.get("location"))


def _cataloged(urn: str, platform: str, where: str, dataset_id: Any,
               location: Any) -> CatalogedDataset:
    dataset_id = str(dataset_id) if dataset_id else None
    location = str(location) if location else None
    if location and "://" in location and location.split("://", 1)[0] not in _URI_SCHEMES:
        # a database: its URL (credentials masked); the table is in the dataset id
        return CatalogedDataset(urn, platform, where, dataset_id=dataset_id, database=location)
    return CatalogedDataset(urn, platform, where, location=location, dataset_id=dataset_id)


def _from_datahub(urn: str, platform: str, name: str, settings: Settings,
                  looked: list[str]) -> CatalogedDataset | None:
    gms = gms_settings()
    if gms is not None:
        where = f"DataHub GMS at {gms[0]}"
        looked.append(where)
        aspects = _gms_aspects(urn, *gms)
    else:
        where = f"DataHub Lite at {settings.catalog_dir}"
        looked.append(where)
        aspects = read_lite(settings.catalog_dir, urn) or {}
    properties = aspects.get("datasetProperties")
    status = aspects.get("status") or {}
    if properties is None and not aspects.get("schemaMetadata"):
        return None
    if status.get("removed"):
        raise ConfigError(f"dataset {urn} is marked removed in {where} (its source no longer "
                          "has it); choose another dataset")
    custom = (properties or {}).get("customProperties") or {}
    if custom.get("location"):
        return _cataloged(urn, platform, where, custom.get("dataset_id"), custom["location"])
    if platform in _OBJECT_PLATFORMS:
        location = _OBJECT_PLATFORMS[platform] + name.lstrip("/")
        return CatalogedDataset(urn, platform, where, location=location)
    raise ConfigError(
        f"dataset {urn} is in {where}, but its URN does not say which {platform} server holds "
        "it. Add that database to config's sources (password as ${VAR}) and give the dataset "
        "as <source>/<table>, or crawl the source with autokfp so the catalog records it")


def _gms_aspects(urn: str, url: str, token: str | None) -> dict[str, Any]:
    """The dataset's properties, status and schema from a GMS (absent aspects left out)."""
    from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
    from datahub.metadata.schema_classes import (
        DatasetPropertiesClass,
        SchemaMetadataClass,
        StatusClass,
    )

    aspects: dict[str, Any] = {}
    graph = None
    try:
        graph = DataHubGraph(DatahubClientConfig(server=url, token=token, timeout_sec=30,
                                                 retry_max_times=1))
        for key, cls in (("datasetProperties", DatasetPropertiesClass), ("status", StatusClass),
                         ("schemaMetadata", SchemaMetadataClass)):
            value = graph.get_aspect(urn, cls)
            if value is not None:
                aspects[key] = value.to_obj()
    except Exception as exc:
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        if token:
            text = text.replace(token, "***")
        raise ConfigError(f"cannot look dataset {urn} up: DataHub GMS at {url} is not "
                          f"reachable or refused ({text[:300]}); check DATAHUB_GMS_URL and "
                          "DATAHUB_GMS_TOKEN") from None
    finally:
        if graph is not None:
            graph.close()
    return aspects
