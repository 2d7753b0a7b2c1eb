"""The run configuration: one YAML file, validated once, at the edge.

Example (the demo writes one like it)::

    name: churn
    sources:
      - {name: files, kind: folder, path: data/files, include: ["*.parquet", "*.csv"]}
      - {name: warehouse, kind: sql, url: "sqlite:///data/warehouse.db"}
    training:
      dataset: warehouse/customers     # <source name>/<table or relative file path>
      target: churned
    budget: {max_runtime_secs: 60}
    engines:                           # each engine's own settings (all optional)
      h2o: {nfolds: 5}
      autokeras: {max_trials: 5}

Every setting has a default except ``name``, ``sources`` and ``training``. Unknown keys are
rejected (a typo must not be silently ignored), and each bad field is reported with its
dotted path and what is allowed.

The settings live in one module per area (``sources``, ``training``, ``engines``,
``quality``, ``serving``, ``governance``, ``monitoring``, ``catalog``; ``run`` assembles
them into ``RunConfig`` and parses files, ``run_form`` applies a pipeline's run form,
``passwords`` keeps secrets out of source URLs); every public name is imported here, so
``from autokfp.config import X`` is the one way to use them.
"""

from autokfp.config.base import NAME_PATTERN
from autokfp.config.catalog import CatalogSpec
from autokfp.config.governance import GovernanceSpec
from autokfp.config.monitoring import CRON_PATTERN, LabelSpec, MonitoringSpec
from autokfp.config.passwords import (
    SQL_PASSWORD_ENV_PREFIX,
    expand_env,
    has_literal_password,
    mask_url_password,
    move_literal_passwords,
    password_env_name,
    whole_env_ref,
)
from autokfp.config.quality import QualitySpec
from autokfp.config.run import (
    MAX_CONFIG_FILE_BYTES,
    MAX_CONFIG_JSON_BYTES,
    MAX_LISTED_ERRORS,
    MAX_TOP_LEVEL_KEYS,
    RunConfig,
    check_config_size,
    load_config,
    parse_config,
    parse_training_settings,
)
from autokfp.config.run_form import FROM_CONFIG, RUN_FORM_SOURCE, apply_run_form, resolve_dataset
from autokfp.config.serving import DeploySpec
from autokfp.config.sources import FolderSource, GcsSource, S3Source, Source, SqlSource
from autokfp.config.training import (
    H2O_CLUSTER_URL_ENV,
    H2O_IMPORT_ROOT_ENV,
    BudgetSpec,
    FeatureSpec,
    H2OClusterSpec,
    SelectionSpec,
    SplitSpec,
    TrainingSettings,
    TrainingSpec,
    resolved_h2o_cluster,
)

__all__ = [
    "CRON_PATTERN", "FROM_CONFIG", "H2O_CLUSTER_URL_ENV", "H2O_IMPORT_ROOT_ENV",
    "MAX_CONFIG_FILE_BYTES", "MAX_CONFIG_JSON_BYTES", "MAX_LISTED_ERRORS", "MAX_TOP_LEVEL_KEYS",
    "NAME_PATTERN", "RUN_FORM_SOURCE", "SQL_PASSWORD_ENV_PREFIX",
    "BudgetSpec", "CatalogSpec", "DeploySpec", "FeatureSpec", "FolderSource", "GcsSource",
    "GovernanceSpec", "H2OClusterSpec", "LabelSpec", "MonitoringSpec", "QualitySpec",
    "RunConfig", "S3Source", "SelectionSpec", "Source", "SplitSpec", "SqlSource",
    "TrainingSettings", "TrainingSpec",
    "apply_run_form", "check_config_size", "expand_env", "has_literal_password", "load_config", "mask_url_password",
    "move_literal_passwords", "parse_config", "parse_training_settings", "password_env_name",
    "resolve_dataset", "resolved_h2o_cluster", "whole_env_ref",
]
