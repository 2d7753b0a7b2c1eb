"""Kubeflow recurring runs (drift-monitoring, batch-scoring) through ``kfp.Client``.

Like ``autokfp.edge.local`` this is an edge module that imports kfp. ``schedule_monitoring``:

1. compiles ``drift-monitoring`` with the cluster settings (``ClusterOptions.from_env``) and
   validates the YAML strictly;
2. uploads it as pipeline ``drift-monitoring`` (once) and as a pipeline version named after
   the autokfp version and the spec's hash (once per distinct spec);
3. finds or creates the experiment;
4. creates the recurring run (cron with 6 fields, seconds first; ``max_concurrency=1``,
   ``no_catchup=True``) with the run config as the ``config`` parameter and
   ``window_end=scheduled``: the window ends at the run's scheduled time, which the pipeline
   reads from ``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER`` (v2 does not expand the v1
   ``[[ScheduledTime]]`` macro, kubeflow/pipelines#12494), so a rerun judges the same window.

It is idempotent: scheduling the same config, cron and spec again finds the existing
recurring run and returns it; a changed cron or spec replaces it (same name).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autokfp.config import SQL_PASSWORD_ENV_PREFIX, RunConfig, has_literal_password
from autokfp.errors import AutokfpError, ConfigError

log = logging.getLogger(__name__)

PIPELINE_NAME = "drift-monitoring"
SCHEDULED_WINDOW_END = "scheduled"  # the pipeline ends the window at the run's scheduled time
_DESCRIPTIONS = {PIPELINE_NAME: "autokfp drift monitoring (re-enters autonomous-training)",
                 "batch-scoring": "autokfp batch scoring (chunked, resumable)"}
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,#LW-]+$")


class SchedulingError(AutokfpError):
    """The Kubeflow Pipelines API refused or could not be reached."""


@dataclass
class ScheduledRun:
    recurring_run_id: str
    name: str
    cron: str
    experiment_id: str
    pipeline_id: str
    pipeline_version_id: str
    created: bool  # False: an identical recurring run already existed
    warnings: list[str] = field(default_factory=list)  # local paths let through on request

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def local_state_in(config: RunConfig) -> list[str]:
    """What in ``config`` names this machine's disk, which pipeline pods cannot see: folder
    sources, SQLite databases and local label files."""
    found = []
    for source in config.sources:
        if source.kind == "folder":
            found.append(f"sources '{source.name}': folder '{source.path}' is on this machine "
                         "(put the files under gs:// or s3:// and use kind gcs or s3)")
        elif source.kind == "sql" and source.url.lower().startswith("sqlite"):
            found.append(f"sources '{source.name}': '{source.url.split('?')[0]}' is a SQLite "
                         "file on this machine (use a database server the cluster reaches)")
    labels = config.monitoring.labels.path
    if labels and "://" not in labels:
        found.append(f"monitoring.labels.path '{labels}' is on this machine (use gs:// or s3://)")
    return found


def check_cluster_config(config: RunConfig, allow_local_paths: bool = False) -> list[str]:
    """Refuse a config whose data lives on this machine before sending it to a cluster.

    Returns the problems let through when ``allow_local_paths`` (the paths exist inside the
    pods, e.g. on a mounted volume); they are returned, for the caller to show as warnings.

    Raises:
        ConfigError: something names a local path and ``allow_local_paths`` is false.
    """
    moved = [f"sources '{source.name}'" for source in config.sources
             if source.kind == "sql" and "${" + SQL_PASSWORD_ENV_PREFIX in source.url]
    if moved:
        raise ConfigError(
            f"{', '.join(moved)}: the url held a literal password, which stays on this machine "
            "(it never travels in a run's parameters). Put the password in a Kubernetes Secret "
            "the pipeline's pods receive as an environment variable, write ${VAR} in the url, "
            "and submit again.")
    found = local_state_in(config)
    if found and not allow_local_paths:
        raise ConfigError(
            "the config names paths on this machine, which the pipeline's pods cannot read: "
            + "; ".join(found) + ". Pass --allow-local-paths only if the same paths exist "
            "inside the pods (a mounted volume).")
    # returned, and shown by the caller (the CLI prints each as "warning: ..."): logged as
    # a warning too, the CLI showed each twice
    for problem in found:
        log.info("sent to the cluster as is: %s", problem)
    return found


def validate_cron(cron: str) -> str:
    """A KFP cron expression: 6 space-separated fields, seconds first (robfig/cron)."""
    fields = cron.split()
    if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
        hint = f" (did you mean '0 {cron}'?)" if len(fields) == 5 else ""
        raise ConfigError(
            f"cron '{cron}' must have 6 fields, seconds first, e.g. '0 0 */6 * * *' for "
            f"every 6 hours{hint}"
        )
    return " ".join(fields)


def compile_monitoring(path: str | Path) -> str:
    """Compile and validate ``drift-monitoring`` into ``path``; return the spec's sha256."""
    return compile_pipeline(PIPELINE_NAME, path)


def compile_pipeline(name: str, path: str | Path) -> str:
    """Compile and validate pipeline ``name`` (cluster settings from the environment) into
    ``path``; return the spec's sha256."""
    from autokfp.edge.compilation import compile_pipeline_file
    from autokfp.pipelines import PIPELINES, ClusterOptions

    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline '{name}'; choose one of {sorted(PIPELINES)}")
    compile_pipeline_file(PIPELINES[name](ClusterOptions.from_env()), path)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class SubmittedRun:
    run_id: str
    pipeline: str
    run_name: str
    experiment: str
    url: str = ""  # the run's page in the Kubeflow UI
    service_account: str | None = None
    warnings: list[str] = field(default_factory=list)  # local paths let through on request

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def submit_run(
    config: RunConfig,
    pipeline: str = "autonomous-training",
    host: str | None = None,
    experiment: str = "autokfp",
    run_name: str | None = None,
    namespace: str | None = None,
    token: str | None = None,
    client: Any = None,
    service_account: str | None = None,
    allow_local_paths: bool = False,
) -> SubmittedRun:
    """Start one run of ``pipeline`` on Kubeflow with ``config`` as its ``config`` parameter.

    The pipeline is compiled here with the cluster settings of the environment (the same
    YAML ``autokfp compile`` writes), validated, and sent inline with the run; the
    experiment is created when it does not exist. The run's pods use ``service_account``
    (e.g. ``autokfp-pipeline-runner``, manifests/base/rbac.yaml); None leaves it to KFP.

    Raises:
        ConfigError: the config names local paths (see ``check_cluster_config``).
    """
    from datetime import datetime, timezone

    warnings = check_cluster_config(config, allow_local_paths)
    run_name = run_name or f"{config.name}-{pipeline}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    client = client or make_client(host, namespace, token)
    with tempfile.TemporaryDirectory(prefix="autokfp-submit-") as scratch:
        package = Path(scratch) / f"{pipeline}.yaml"
        compile_pipeline(pipeline, package)
        printed = io.StringIO()  # kfp prints the UI links; keep our stdout clean (--json)
        with contextlib.redirect_stdout(printed):
            result = _api_call(
                "create the run",
                client.create_run_from_pipeline_package,
                str(package),
                arguments={"config": config.to_dict()},
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                service_account=service_account,
            )
    links = re.findall(r"^Run details: (\S+)$", printed.getvalue(), flags=re.MULTILINE)
    return SubmittedRun(result.run_id, pipeline, run_name, experiment, links[0] if links else "",
                        service_account, warnings)


def _filter(name: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )


def _api_call(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ApiException, connection errors: one message
        status = getattr(exc, "status", None)
        reason = getattr(exc, "reason", None) or type(exc).__name__
        body = str(getattr(exc, "body", "") or exc)[:300]
        raise SchedulingError(
            f"Kubeflow Pipelines refused to {what}: "
            f"{'HTTP ' + str(status) + ' ' if status else ''}{reason}: {body}"
        ) from None


def token_from_env(variable: str | None) -> str | None:
    """The bearer token in environment variable ``variable`` (``--token-env``), if one is named."""
    import os

    if not variable:
        return None
    token = os.environ.get(variable)
    if not token:
        raise ConfigError(f"--token-env {variable}: that environment variable is not set")
    return token


NO_HOST_HINT = ("pass --host with the Kubeflow Pipelines API, e.g. --host "
                "https://kubeflow.example.com/pipeline (or set KF_PIPELINES_ENDPOINT)")


def make_client(host: str | None, namespace: str | None = None, token: str | None = None,
                hint: str = "") -> Any:
    """A ``kfp.Client`` for ``host``; without one, the in-cluster endpoint, which only exists
    in a pod (elsewhere: an error saying to pass --host, plus ``hint``, at once)."""
    import os

    import kfp

    if not host and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise ConfigError(f"no Kubeflow Pipelines host: {NO_HOST_HINT}{hint}")

    kwargs: dict[str, Any] = {"host": host}
    if namespace:
        kwargs["namespace"] = namespace
    if token:
        kwargs["existing_token"] = token
    return _api_call(f"connect to {host or 'the in-cluster endpoint'}", kfp.Client, **kwargs)


# drift-monitoring's typed run form (its parameters but ``config`` and ``window_end``)
MONITORING_FORM = ("model_name", "dataset", "target", "labels", "window_days", "drift_share",
                   "performance_drop", "budget_seconds", "engines")


def schedule_monitoring(
    config: RunConfig | None = None,
    host: str | None = None,
    cron: str | None = None,
    experiment: str = "autokfp",
    name: str | None = None,
    namespace: str | None = None,
    token: str | None = None,
    client: Any = None,
    service_account: str | None = None,
    allow_local_paths: bool = False,
    form: dict[str, Any] | None = None,
) -> ScheduledRun:
    """Create (or find) the recurring run of ``drift-monitoring`` for ``config``; its runs'
    pods use ``service_account`` (None: KFP's default).

    With ``form`` (the pipeline's typed parameters, ``MONITORING_FORM``: model_name,
    dataset, target, labels, window_days, drift_share, performance_drop, budget_seconds,
    engines), the recurring run gets them as its parameters, as the Kubeflow UI shows them,
    and ``config`` (optional) is only the override of everything else. They are checked here
    first, as the run's first task checks them. Each tick ends its window at its scheduled
    time (``window_end=scheduled``: the pipeline reads
    ``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER``).

    Raises:
        ConfigError: no config and no form, a parameter the form does not have, a bad
            value, or the config names local paths (see ``check_cluster_config``).
    """
    request = _monitoring_request(config, cron, name, allow_local_paths, form)
    return schedule_pipeline(
        PIPELINE_NAME, request["params"], name=request["name"], cron=request["cron"],
        description=request["description"], host=host, experiment=experiment,
        namespace=namespace, token=token, client=client, service_account=service_account,
        warnings=request["warnings"])


def monitoring_schedule_spec(
    config: RunConfig | None = None,
    cron: str | None = None,
    experiment: str = "autokfp",
    name: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
    allow_local_paths: bool = False,
    form: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``schedule_monitoring`` would create, with the same checks, without a KFP host:
    the pipeline version it would upload (compiled here) and the recurring run's fields as
    ``kfp.Client.create_recurring_run`` receives them (``autokfp schedule --dry-run``)."""
    from autokfp import __version__

    request = _monitoring_request(config, cron, name, allow_local_paths, form)
    with tempfile.TemporaryDirectory(prefix="autokfp-schedule-") as scratch:
        digest = compile_pipeline(PIPELINE_NAME, Path(scratch) / f"{PIPELINE_NAME}.yaml")
    return {
        "pipeline": PIPELINE_NAME,
        "pipeline_version": f"{PIPELINE_NAME}-{__version__}-{digest[:12]}",
        "experiment": experiment,
        "namespace": namespace,
        "recurring_run": {
            "job_name": request["name"],
            "description": request["description"],
            "cron_expression": request["cron"],
            "max_concurrency": 1,
            "no_catchup": True,
            "enabled": True,
            "service_account": service_account,
            "params": request["params"],
        },
        "warnings": request["warnings"],
    }


def _monitoring_request(config: RunConfig | None, cron: str | None, name: str | None,
                        allow_local_paths: bool,
                        form: dict[str, Any] | None) -> dict[str, Any]:
    """The checked parameters, name, cron and description of the monitoring recurring run."""
    from autokfp import __version__

    if form:
        unknown = sorted(set(form) - set(MONITORING_FORM))
        if unknown:
            raise ConfigError(f"drift-monitoring has no parameter {', '.join(unknown)}; its run "
                              f"form is: {', '.join(MONITORING_FORM)} (and config)")
        from autokfp.config import parse_config
        from autokfp.steps.resolve_config import resolve_config

        base = config.to_dict() if config is not None else {}
        resolved = parse_config(resolve_config(base or None, check_data=False, **form).config,
                                origin="the run form")
        params: dict[str, Any] = {**form, "config": base}
    elif config is not None:
        resolved, params = config, {"config": config.to_dict()}
    else:
        raise ConfigError("schedule_monitoring: give a run config, or form= with the run "
                          f"form's parameters ({', '.join(MONITORING_FORM)})")
    warnings = check_cluster_config(resolved, allow_local_paths)
    return {"params": {**params, "window_end": SCHEDULED_WINDOW_END},
            "name": name or f"{resolved.name}-drift-monitoring",
            "cron": validate_cron(cron or resolved.monitoring.schedule),
            "description": f"drift monitoring of {resolved.name} (autokfp {__version__})",
            "warnings": warnings}


def schedule_batch_scoring(
    form: dict[str, Any],
    cron: str,
    config: RunConfig | None = None,
    host: str | None = None,
    experiment: str = "autokfp",
    name: str | None = None,
    namespace: str | None = None,
    token: str | None = None,
    client: Any = None,
    service_account: str | None = None,
    allow_local_paths: bool = False,
) -> ScheduledRun:
    """Create (or find) a recurring run of ``batch-scoring`` with ``form`` (``dataset``,
    ``model``, ``output``, ``keys``, ``chunk_rows``) and the optional ``config``. Each tick
    scores the dataset as it is then; a tick over unchanged data and model finds every chunk
    written and skips them.

    Raises:
        ConfigError: the config names local paths (see ``check_cluster_config``), or the
            dataset or output is a path on this machine.
    """
    from autokfp import __version__

    warnings = check_cluster_config(config, allow_local_paths) if config is not None else []
    for key in ("dataset", "output"):
        value = str(form.get(key) or "")
        if value.startswith("/") and not allow_local_paths:
            raise ConfigError(f"{key} '{value}' is a path on this machine, which the pipeline's "
                              "pods cannot read; use gs://, s3:// or a database URL, or pass "
                              "--allow-local-paths when the same path exists in the pods")
        if "://" in value and has_literal_password(value):
            raise ConfigError(f"{key} holds a password; write it as ${{VAR}} (e.g. "
                              "postgresql://scorer:${PG_PASSWORD}@db/crm#scores) and give the "
                              "pods that variable: a recurring run's parameters are stored by "
                              "Kubeflow and shown in its UI")
    model = str(form.get("model") or (config.name if config is not None else "model"))
    params = {**form, "config": config.to_dict() if config is not None else {}}
    slug = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")
    return schedule_pipeline(
        "batch-scoring", params, name=name or f"{slug}-batch-scoring", cron=validate_cron(cron),
        description=f"batch scoring with {model} (autokfp {__version__})", host=host,
        experiment=experiment, namespace=namespace, token=token, client=client,
        service_account=service_account, warnings=warnings)


def schedule_pipeline(pipeline: str, params: dict[str, Any], *, name: str, cron: str,
                      description: str, host: str | None = None, experiment: str = "autokfp",
                      namespace: str | None = None, token: str | None = None, client: Any = None,
                      service_account: str | None = None,
                      warnings: list[str] | None = None) -> ScheduledRun:
    """Create (or find) the recurring run ``name`` of ``pipeline`` with ``params``."""
    client = client or make_client(host, namespace, token)
    pipeline_id, version_id = _upload_version(client, pipeline)
    found = _api_call(
        "create the experiment", client.create_experiment, experiment, namespace=namespace
    )
    experiment_id = found.experiment_id
    existing = _keep_or_remove_recurring_runs(client, experiment_id, name, version_id, cron,
                                              params, service_account)
    if existing is not None:
        return ScheduledRun(existing, name, cron, experiment_id, pipeline_id, version_id,
                            created=False, warnings=list(warnings or []))
    created = _api_call(
        "create the recurring run",
        client.create_recurring_run,
        experiment_id=experiment_id,
        job_name=name,
        description=description,
        cron_expression=cron,
        pipeline_id=pipeline_id,
        version_id=version_id,
        params=params,
        max_concurrency=1,
        no_catchup=True,
        enabled=True,
        service_account=service_account,
    )
    return ScheduledRun(
        created.recurring_run_id, name, cron, experiment_id, pipeline_id, version_id, created=True,
        warnings=list(warnings or []),
    )


def _upload_version(client: Any, pipeline: str = PIPELINE_NAME) -> tuple[str, str]:
    """Compile ``pipeline``, upload it as the pipeline (once) and as a version named after
    the autokfp version and the spec's hash (once per distinct spec).

    Returns:
        The pipeline's id and the version's id.
    """
    from autokfp import __version__

    with tempfile.TemporaryDirectory(prefix="autokfp-schedule-") as scratch:
        package = Path(scratch) / f"{pipeline}.yaml"
        digest = compile_pipeline(pipeline, package)
        version_name = f"{pipeline}-{__version__}-{digest[:12]}"

        pipeline_id = _api_call("look up the pipeline", client.get_pipeline_id, pipeline)
        if pipeline_id is None:
            uploaded = _api_call(
                "upload the pipeline",
                client.upload_pipeline,
                str(package),
                pipeline_name=pipeline,
                description=_DESCRIPTIONS.get(pipeline, f"autokfp {pipeline}"),
            )
            pipeline_id = uploaded.pipeline_id
        versions = _api_call(
            "list pipeline versions",
            client.list_pipeline_versions,
            pipeline_id,
            page_size=100,
            filter=_filter(version_name),
        )
        existing_version = next(
            (v for v in (versions.pipeline_versions or []) if v.display_name == version_name), None
        )
        if existing_version is None:
            existing_version = _api_call(
                "upload the pipeline version",
                client.upload_pipeline_version,
                str(package),
                version_name,
                pipeline_id=pipeline_id,
                description=f"autokfp {__version__}, spec sha256 {digest}",
            )
        return pipeline_id, existing_version.pipeline_version_id


def _same_recurring_run(run: Any, version_id: str, cron: str, params: dict[str, Any],
                        service_account: str | None) -> bool:
    """Whether the recurring run ``run`` already runs this spec, cron, config and account."""
    reference = run.pipeline_version_reference
    same_spec = reference is not None and reference.pipeline_version_id == version_id
    same_cron = (
        run.trigger is not None
        and run.trigger.cron_schedule is not None
        and run.trigger.cron_schedule.cron == cron
    )
    given = (run.runtime_config.parameters or {}) if run.runtime_config is not None else {}
    same_params = run.runtime_config is not None and all(
        given.get(key) == value for key, value in params.items())
    same_account = (getattr(run, "service_account", None) or None) == service_account
    return same_spec and same_cron and same_params and same_account


def _keep_or_remove_recurring_runs(client: Any, experiment_id: str, name: str, version_id: str,
                                   cron: str, params: dict[str, Any],
                                   service_account: str | None) -> str | None:
    """The id of the recurring run ``name`` when it is already what was asked for; an
    outdated one (another cron, spec, config or account) is deleted and None returned."""
    listed = _api_call(
        "list recurring runs",
        client.list_recurring_runs,
        experiment_id=experiment_id,
        page_size=100,
        filter=_filter(name),
    )
    for run in listed.recurring_runs or []:
        if run.display_name != name:
            continue
        if _same_recurring_run(run, version_id, cron, params, service_account):
            log.info("recurring run %s already exists (%s)", name, run.recurring_run_id)
            return run.recurring_run_id
        log.info(
            "replacing recurring run %s (%s): the cron, spec, config or account changed",
            name,
            run.recurring_run_id,
        )
        _api_call(
            "delete the outdated recurring run", client.delete_recurring_run, run.recurring_run_id
        )
    return None
