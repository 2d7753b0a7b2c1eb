"""The KFP faces of autokfp: one thin ``@dsl.component`` per stage.

Each component does argument plumbing and artifact paths, then makes one call into the
engine (``autokfp.steps.<name>``). Components run in the images named by
``autokfp.settings.image`` (registry from ``AUTOKFP_IMAGE_REGISTRY``, tag = package
version) and never pip-install anything at run time.
"""

from components.data.catalog_sources.component import catalog_sources
from components.data.discover.component import discover
from components.data.profile.component import profile
from components.evaluation.evaluate_model.component import evaluate_model
from components.evaluation.select_model.component import select_model
from components.features.engineer_features.component import engineer_features
from components.governance import (
    GOVERNANCE_COMPONENTS,
    bias_check,
    check_data_bias,
    explain_model,
    write_model_card,
)
from components.registry.register_model.component import register_model
from components.serving.deploy_model.component import deploy_model
from components.training.train_autokeras.component import train_autokeras
from components.training.train_h2o_automl.component import train_h2o_automl

ALL_COMPONENTS = (catalog_sources, discover, profile, engineer_features, train_h2o_automl, train_autokeras,
                  select_model, evaluate_model, register_model, deploy_model) + GOVERNANCE_COMPONENTS

__all__ = ["ALL_COMPONENTS", "bias_check", "catalog_sources", "check_data_bias", "explain_model",
           "write_model_card", "deploy_model", "discover", "engineer_features", "evaluate_model",
           "profile", "register_model", "select_model", "train_autokeras", "train_h2o_automl"]
