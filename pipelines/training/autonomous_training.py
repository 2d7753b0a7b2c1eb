"""The ``autonomous-training`` pipeline.

discover → profile (quality gate) → engineer features → data bias check → list engines →
train one candidate per configured engine (``dsl.ParallelFor``: H2O AutoML ∥ AutoKeras ∥ any
plugin engine, each on a GPU node) → select (``dsl.Collected`` candidates and the champion
on the same test rows) → bias check (+ mitigation
carried in the model) → evaluate the checked model vs the champion → refit on every
labelled row (small tables) → explain the served model → register (MLflow alias) → model card + compliance
report → deploy (KServe canary, verify, promote or roll back; held back while a required
approval is missing).
"""


from kfp import dsl

from autokfp.components import (
    bias_check,
    check_data_bias,
    deploy_model,
    discover,
    engineer_features,
    evaluate_model,
    explain_model,
    list_engines,
    load_training_data,
    profile,
    refit_model,
    register_model,
    resolve_config,
    select_model,
    train_model,
    write_model_card,
)
from autokfp.pipelines.cluster import (
    ClusterOptions,
    built_on_first_use,
    configure_refit_task,
    configure_task,
    configure_training_task,
)

# a run-form parameter left at this keeps the config's value; not "" (the KFP UI reports a
# falsy default as "Missing parameter", kubeflow/pipelines#11515)
FROM_CONFIG = "from config"

PIPELINE_NAME = "autonomous-training"

def build_autonomous_training(options: "ClusterOptions | None" = None):
    """Build the pipeline with ``options`` (cluster settings; ignored by kfp.local)."""
    options = options or ClusterOptions()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Autonomous training: discover, validate, engineer features, train every "
                    "configured engine (H2O AutoML, AutoKeras, plugins) in parallel on GPU "
                    "nodes, select the best candidate "
                    "against the champion on the same test rows, register it in MLflow, "
                    "deploy to KServe.",
    )
    def autonomous_training(
        dataset: str = FROM_CONFIG,
        target: str = FROM_CONFIG,
        task: str = FROM_CONFIG,
        model_name: str = FROM_CONFIG,
        budget_seconds: int = -1,
        engines: str = FROM_CONFIG,
        require_approval: bool = False,
        config: dict = {},  # noqa: B006 - a KFP default, never mutated
    ) -> dsl.Artifact:
        """Train, select, check, register and deploy a model for one dataset.

        Args:
            dataset: The data to learn from: a gs:// or s3:// URI of a Parquet/CSV file
                (e.g. gs://my-bucket/churn/customers.parquet), <source>/<table or file> of
                the sources in config, or a DataHub dataset URN (urn:li:dataset:...) that
                discovery catalogued. "from config": config's training.dataset.
            target: The column to predict. "from config": config's training.target.
            task: auto (inferred from the target), binary, multiclass or regression.
                "from config": config's training.task (default auto).
            model_name: Name of the registered model (lowercase letters, digits, '-').
                "from config": config's name, else the dataset's name.
            budget_seconds: Training time of each engine in seconds (engines train side by
                side on GPU nodes), 10 to 86400, e.g. 600; -1: config's
                budget.max_runtime_secs (default 120).
            engines: Comma-separated engines that compete, e.g. "h2o,autokeras" (GPU use is
                a compile-time setting: AUTOKFP_GPU_COUNT). "from config": config's engines
                (default: every installed engine).
            require_approval: Hold the model back from production until a person runs
                'autokfp approve MODEL VERSION' (a config that requires approval always does).
            config: Optional: a full run configuration as JSON (sources, quality, features,
                selection, deploy, governance, monitoring...); the fields above override it.
                See the project's README, "The run config".
        """
        resolved = configure_task(
            resolve_config(config=config, dataset=dataset, target=target, task=task,
                           model_name=model_name, budget_seconds=budget_seconds,
                           engines=engines, require_approval=require_approval),
            options, name="check the run form + data")
        config = resolved.output
        found = configure_task(discover(config=config), options, name="discover data")
        checked = configure_task(profile(config=config, dataset=found.outputs["dataset"],
                                         schema=found.outputs["schema"]), options, name="profile + quality gate")
        features = configure_task(engineer_features(config=config, dataset=found.outputs["dataset"],
                                                    schema=found.outputs["schema"]), options, caching=True,
                                  name="engineer features")
        features.after(checked)
        data_bias = configure_task(check_data_bias(config=config, train=features.outputs["train"],
                                                   plan=features.outputs["plan"],
                                                   schema=found.outputs["schema"]), options, name="data bias check")
        # One training task per configured engine, all from the same features and with no
        # dependency between them: in the cluster they run at the same time, each on its own
        # GPU node (kfp.local runs them one after the other: options.training_parallelism).
        # An engine that fails still completes its task with a "failed candidate" marker, so
        # selection falls back to the other engines' leaders.
        engines = configure_task(list_engines(config=config), options, name="list engines")
        # KFP's cache key of a task holds its parameters' values and its input artifacts' ids.
        # The ids of engineer-features' train/plan are new in every run (discover is never
        # cached, so neither is anything fed by it), so the training tasks take theirs from
        # load-training-data, whose only input is the URI naming the digest of the train rows
        # and the plan: in a new run on the same data its key is the same, KFP reuses its
        # artifacts (same ids), and the GPU tasks hit the cache (docs/kubeflow-ui.md, item 1).
        training_data = configure_task(
            load_training_data(training_data=features.outputs["training_data"]), options,
            caching=True, name="load training data (content-addressed)")
        # Each item holds an engine's name and the settings its training task reads, nothing
        # else: no deploy or governance setting, nor another engine's, is among the GPU
        # task's parameters.
        with dsl.ParallelFor(engines.output, parallelism=options.training_parallelism) as item:
            trained = configure_training_task(
                train_model(config=item.settings, engine=item.engine,
                            train=training_data.outputs["train"],
                            plan=training_data.outputs["plan"]), options, name="train candidate (GPU)")
            trained.set_retry(num_retries=1, backoff_duration="60s")
            trained.after(data_bias)
        selected = configure_task(select_model(config=config,
                                               candidates=dsl.Collected(trained.outputs["model"]),
                                               test=features.outputs["test"]), options, name="select best candidate")
        # fairness is checked (and mitigated) on the selected model; everything after it,
        # evaluation included, sees the package that will be served
        bias = configure_task(bias_check(config=config, model=selected.outputs["model"],
                                         train=features.outputs["train"],
                                         test=features.outputs["test"],
                                         schema=found.outputs["schema"]), options, name="bias check + mitigation")
        evaluated = configure_task(evaluate_model(config=config, model=bias.outputs["checked_model"],
                                                  test=features.outputs["test"]), options, name="evaluate vs champion")
        # the gate passed: on a small table the same configuration is fitted again on every
        # labelled row (test rows too) and served; the gated package stays inside it for the
        # next run's gate (training.refit_for_serving)
        # (it trains: the training task's CPU and memory, on the CPU)
        refitted = configure_refit_task(refit_model(config=config, model=bias.outputs["checked_model"],
                                                    evaluation=evaluated.outputs["evaluation"],
                                                    train=features.outputs["train"],
                                                    test=features.outputs["test"]), options,
                                        name="refit on every labelled row")
        # what is explained is what serves: the refit when there is one
        explained = configure_task(explain_model(config=config,
                                                 model=refitted.outputs["served_model"],
                                                 train=features.outputs["train"],
                                                 test=features.outputs["test"]), options, name="explain")
        registered = configure_task(register_model(config=config, model=refitted.outputs["served_model"],
                                                   evaluation=evaluated.outputs["evaluation"],
                                                   schema=found.outputs["schema"],
                                                   kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                                   pipeline_name=PIPELINE_NAME),
                                    options, name="register in MLflow")
        registered.after(explained)
        card = configure_task(write_model_card(config=config, model=refitted.outputs["served_model"],
                                               registration=registered.outputs["registration"],
                                               evaluation=evaluated.outputs["evaluation"],
                                               schema=found.outputs["schema"],
                                               fairness=bias.outputs["summary"],
                                               explanation=explained.outputs["explanation"]), options, name="model card + compliance")
        # the deploy step itself holds a version back while a required approval is missing
        deployed = configure_task(deploy_model(config=config,
                                               registration=registered.outputs["registration"],
                                               test=features.outputs["test"]), options, name="deploy to KServe (canary, verify, promote/rollback)")
        deployed.after(card)
        return registered.outputs["registration"]

    return autonomous_training


# ``autonomous_training`` (default options) is built when first read: see built_on_first_use
__getattr__, __dir__ = built_on_first_use(globals(), "autonomous_training", build_autonomous_training)
