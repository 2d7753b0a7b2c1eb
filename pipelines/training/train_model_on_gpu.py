"""``train-model-on-gpu``: the ``train_model`` component with its cluster settings baked in.

A component YAML holds no task settings (KFP keeps the accelerator, resources, node selector,
tolerations and env on the task), so ``training/train_model.yaml`` trains wherever the task
that loads it says. This one-task pipeline wraps ``train_model`` and gives it what
``configure_training_task`` gives autokfp's own training tasks: the GPU request, the GPU node
selector and tolerations, CPU and memory requests, caching, and the ``autokfp-config``
ConfigMap / ``autokfp-credentials`` Secret as env, from the compile-time ``ClusterOptions``
(``AUTOKFP_GPU_*``). ``autokfp compile --components DIR`` writes it as
``DIR/training/train_model_on_gpu.yaml``; loaded with ``kfp.components.load_component_from_file``
it is a task with train_model's inputs and outputs whose settings survive the load
(kfp 2.17; tests/compile/test_component_readmes.py compiles a user pipeline of it).

Its name must differ from the component's (``train-model``): kfp 2.17 loads a pipeline YAML
whose name is its only task's component name as that component alone, dropping every task
setting (tried: the accelerator, resources and the Kubernetes platform spec all vanish).
"""

# no ``from __future__ import annotations``: KFP reads the annotations as types
from typing import NamedTuple

from kfp import dsl

from autokfp.components import train_model
from autokfp.pipelines.cluster import ClusterOptions, configure_training_task

NAME = "train-model-on-gpu"


class Outputs(NamedTuple):
    """What the task gives, as ``train_model`` gives it."""

    Output: str  # the candidate's status: trained, failed or skipped
    model: dsl.Model
    leaderboard: dsl.HTML
    metrics: dsl.Metrics


def build_train_model_on_gpu(options: "ClusterOptions | None" = None):
    """The one-task pipeline, with ``options``' cluster settings on its task."""
    options = options or ClusterOptions()
    @dsl.pipeline(name=NAME, description=(
        "train_model with the cluster's GPU request, node selector, tolerations, resources "
        "and the autokfp-config / autokfp-credentials env baked in (compile-time settings)."))
    def train_model_on_gpu(
        train: dsl.Input[dsl.Dataset],
        plan: dsl.Input[dsl.Artifact],
        engine: str = "h2o",
        budget_seconds: int = -1,
        config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
    ) -> Outputs:
        """Train ``engine`` on a GPU node and package its leader as an MLflow pyfunc.

        Args:
            train: Training rows (Parquet), from ``engineer_features``.
            plan: The feature plan (JSON), from ``engineer_features``.
            engine: The engine's registered name (e.g. ``h2o``, ``autokeras``).
            budget_seconds: The engine's search time in seconds (-1: the config's
                ``budget.max_runtime_secs``, default 120).
            config: Optional: what training reads (an item's ``settings`` from
                ``list_engines``, or a whole run config); ``budget_seconds`` overrides its
                budget.
        """
        task = train_model(train=train, plan=plan, engine=engine,
                           budget_seconds=budget_seconds, config=config)
        configure_training_task(task, options)
        return Outputs(task.outputs["Output"], task.outputs["model"],
                       task.outputs["leaderboard"], task.outputs["metrics"])

    return train_model_on_gpu
