"""The data sources a run reads: folders, ``gs://``, ``s3://``/``minio://`` and SQL databases."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from autokfp.config.base import _Strict
from autokfp.config.passwords import move_literal_passwords, password_env_name, whole_env_ref

# one logger for the whole config package (its messages keep their name)
log = logging.getLogger("autokfp.config")


class _CatalogNaming(_Strict):
    """How DataHub names a source's datasets: ``platform_instance`` and ``env`` go into every
    dataset URN exactly as DataHub's own source for the platform puts them, so autokfp's
    datasets join a catalog that DataHub's ingestion already filled."""

    platform_instance: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    env: str = Field(default="PROD", pattern=r"^[A-Z0-9_]+$")


class FolderSource(_CatalogNaming):
    """A local folder of CSV / Parquet / JSON-lines files (searched recursively)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["folder"]
    path: str
    include: list[str] = Field(default_factory=lambda: ["*.csv", "*.parquet", "*.jsonl"])
    exclude: list[str] = Field(default_factory=list)


class GcsSource(_CatalogNaming):
    """Files under a ``gs://bucket/prefix``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["gcs"]
    uri: str
    include: list[str] = Field(default_factory=lambda: ["*.csv", "*.parquet", "*.jsonl"])
    exclude: list[str] = Field(default_factory=list)

    @field_validator("uri")
    @classmethod
    def _gs_uri(cls, value: str) -> str:
        if not value.startswith("gs://") or len(value) <= len("gs://"):
            raise ValueError("must look like gs://bucket or gs://bucket/prefix")
        return value.rstrip("/")


class S3Source(_CatalogNaming):
    """Files under an ``s3://bucket/prefix`` (AWS S3), or ``minio://bucket/prefix`` for MinIO
    and other S3-compatible stores at ``AWS_ENDPOINT_URL``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["s3"]
    uri: str
    include: list[str] = Field(default_factory=lambda: ["*.csv", "*.parquet", "*.jsonl"])
    exclude: list[str] = Field(default_factory=list)

    @field_validator("uri")
    @classmethod
    def _s3_uri(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme not in ("s3", "minio") or not rest.strip("/"):
            raise ValueError("must look like s3://bucket/prefix (or minio://bucket/prefix)")
        return value.rstrip("/")


class SqlSource(_CatalogNaming):
    """A database reached through a SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://...``).

    Put passwords in an environment variable and reference it as ``${VAR}`` in the URL, or
    the whole URL in one (``url: ${DATABASE_URL}``); the expanded value is never written to
    logs, artifacts or compiled pipelines.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["sql"]
    url: str
    tables: list[str] | None = None
    schema_name: str | None = Field(default=None, alias="schema")
    # views are crawled (each sampled and counted) after the tables, as DataHub's SQL sources
    # do by default; false skips them where views are costly to query
    include_views: bool = True

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if "://" not in value and whole_env_ref(value) is None:
            raise ValueError("must be a SQLAlchemy URL such as sqlite:///path/to.db, or "
                             "${VAR}: an environment variable holding the whole URL")
        return value.strip()  # " ${VAR} " is read as ${VAR}, and SQLAlchemy takes no spaces

    @model_validator(mode="after")
    def _no_literal_password(self) -> SqlSource:
        """A literal password never stays in the config, which travels everywhere (every
        task's command line and log, compiled run parameters, the model card, MLflow): it
        moves to an environment variable of this process (local tasks inherit it) and the
        url references that variable instead."""
        url, moved = move_literal_passwords(self.url, password_env_name(self.name))
        if moved:
            self.url = url
            log.warning(
                "source '%s': its url holds a literal password; it was moved to the "
                "environment variable %s of this process (local tasks inherit it) and the url "
                "now reads %s. Never write a password in a config: set an environment variable "
                "(in a cluster, from a Kubernetes Secret) and write ${VAR} in the url.",
                self.name, " and ".join(moved), url)
        return self


Source = Annotated[FolderSource | GcsSource | S3Source | SqlSource, Field(discriminator="kind")]
