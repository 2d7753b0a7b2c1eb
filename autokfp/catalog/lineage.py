"""Lineage: source dataset -> feature set -> model version -> deployment, and what depends
on what.

The graph is kept twice: in DataHub (dataset UpstreamLineage, MLModel entities naming
their training data and deployments, see ``catalog.datahub``) and as one JSON file in the
artifact store (``<artifact root>/catalog/lineage.json``) that ``autokfp lineage NAME``
and ``autokfp impact DATASET`` query without a DataHub server.

Nodes are keyed by their DataHub URN and carry a ``kind`` (dataset, feature_set,
model_version, deployment), a display ``name`` and properties; edges point downstream
(``from`` is the upstream node).

``record_model_lineage`` is what the register stage calls once a model version is
registered; ``record_deployment`` is for a step that deploys a version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autokfp.catalog.store import CatalogStore, now_iso
from autokfp.errors import DataError
from autokfp.settings import Settings

log = logging.getLogger(__name__)

LINEAGE_FILE = "lineage.json"
KINDS = ("dataset", "feature_set", "model_version", "deployment")
_VERSION_NAME = re.compile(r"^(?P<name>.+?)(?:\s+v|-v|@v|:v?|/v?)(?P<version>\d+)$")


@dataclass
class LineageGraph:
    """Nodes (by URN) and downstream edges, as stored in ``lineage.json``."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, str]] = field(default_factory=list)

    # ------------------------------------------------------------------ build

    def add_node(self, urn: str, kind: str, name: str, **properties: Any) -> None:
        node = self.nodes.setdefault(urn, {"kind": kind, "name": name, "since": now_iso()})
        node.update({"kind": kind, "name": name, **properties})

    def add_edge(self, upstream: str, downstream: str, relation: str) -> None:
        edge = {"from": upstream, "to": downstream, "relation": relation}
        if edge not in self.edges:
            self.edges.append(edge)

    def remove_edges_to(self, downstream: str, keep_from: str | None = None) -> None:
        self.edges = [e for e in self.edges
                      if e["to"] != downstream or e["from"] == keep_from]

    # ------------------------------------------------------------------ query

    def _walk(self, start: str, forward: bool) -> list[tuple[str, int, str]]:
        """(urn, depth, relation) of every node reachable from ``start``, nearest first."""
        step = "to" if forward else "from"
        back = "from" if forward else "to"
        seen = {start}
        order: list[tuple[str, int, str]] = []
        queue = deque([(start, 0)])
        while queue:
            current, depth = queue.popleft()
            for edge in self.edges:
                if edge[back] == current and edge[step] not in seen:
                    seen.add(edge[step])
                    order.append((edge[step], depth + 1, edge["relation"]))
                    queue.append((edge[step], depth + 1))
        return order

    def downstream(self, urn: str) -> list[tuple[str, int, str]]:
        return self._walk(urn, forward=True)

    def upstream(self, urn: str) -> list[tuple[str, int, str]]:
        return self._walk(urn, forward=False)

    def resolve(self, name: str) -> list[str]:
        """URNs a user may mean by ``name``: a URN, a dataset id, a model name (every
        version), ``model v3`` / ``model-v3``, a feature set or a deployment name."""
        name = name.strip()
        if name in self.nodes:
            return [name]
        exact = [u for u, n in self.nodes.items() if name in (n.get("name"), n.get("dataset_id"))]
        if exact:
            return exact
        versions = [u for u, n in self.nodes.items()
                    if n["kind"] == "model_version" and n.get("model") == name]
        if versions:
            return sorted(versions, key=lambda u: int(self.nodes[u].get("version", 0)))
        match = _VERSION_NAME.match(name)
        if match:
            versions = [u for u, n in self.nodes.items()
                        if n["kind"] == "model_version" and n.get("model") == match["name"]
                        and str(n.get("version")) == match["version"]]
            if versions:
                return versions
        return [u for u, n in self.nodes.items()
                if n["kind"] == "deployment" and n.get("service") == name]

    def columns_used(self, dataset_urn: str) -> set[str] | None:
        """Columns of a dataset that the models trained on it read (None: no such model)."""
        used: set[str] = set()
        found = False
        for urn, _depth, _relation in self.downstream(dataset_urn):
            node = self.nodes.get(urn, {})
            if node.get("kind") == "feature_set" and dataset_urn in node.get("sources", []):
                used.update(node.get("input_columns", []))
                if node.get("target"):
                    used.add(node["target"])
                found = True
        return used if found else None

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "edges": self.edges}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineageGraph:
        return cls(nodes=dict(data.get("nodes", {})), edges=list(data.get("edges", [])))


def load_lineage(store: CatalogStore | None = None) -> LineageGraph:
    store = store or CatalogStore()
    return LineageGraph.from_dict(store.read_json(LINEAGE_FILE, {}))


def save_lineage(graph: LineageGraph, store: CatalogStore) -> str:
    return store.write_json(LINEAGE_FILE, graph.to_dict())


# --------------------------------------------------------------------------- queries


def _describe(graph: LineageGraph, urn: str) -> dict[str, Any]:
    node = graph.nodes.get(urn, {"kind": "unknown", "name": urn})
    return {"urn": urn, **node}


def _dataset_urn_of(dataset: str, store: CatalogStore, graph: LineageGraph) -> str:
    if dataset.startswith("urn:li:"):
        return dataset
    for urn, node in graph.nodes.items():
        if node["kind"] == "dataset" and dataset in (node.get("dataset_id"), node.get("name")):
            return urn
    return store.entry(dataset)["urn"]  # DataError listing the catalogued datasets


def impact(dataset: str, settings: Settings | None = None) -> dict[str, Any]:
    """Everything that depends on ``dataset`` (a dataset id or URN).

    Returns:
        ``{"dataset", "urn", "feature_sets", "model_versions", "deployments", "datasets"}``,
        each a list of nodes (urn, name, properties) downstream of the dataset.

    Raises:
        DataError: the dataset is neither catalogued nor in the lineage graph.
    """
    store = CatalogStore(settings)
    graph = load_lineage(store)
    urn = _dataset_urn_of(dataset, store, graph)
    out: dict[str, Any] = {"dataset": dataset, "urn": urn, "feature_sets": [],
                           "model_versions": [], "deployments": [], "datasets": []}
    plural = {"feature_set": "feature_sets", "model_version": "model_versions",
              "deployment": "deployments", "dataset": "datasets"}
    for node_urn, depth, relation in graph.downstream(urn):
        node = _describe(graph, node_urn)
        key = plural.get(node["kind"])
        if key:
            out[key].append({**node, "depth": depth, "relation": relation})
    for key in plural.values():
        out[key].sort(key=_order)
    return out


def _order(node: dict[str, Any]) -> tuple[str, int, str]:
    version = str(node.get("version", ""))
    return (str(node.get("model", "")), int(version) if version.isdigit() else 0,
            str(node.get("name", "")))


def lineage(name: str, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Upstream and downstream of every node ``name`` resolves to (see ``resolve``).

    Raises:
        DataError: nothing in the lineage graph (or catalog) is called ``name``.
    """
    store = CatalogStore(settings)
    graph = load_lineage(store)
    urns = graph.resolve(name)
    if not urns:
        try:
            urns = [store.entry(name)["urn"]]
        except DataError:
            models = sorted({n["model"] for n in graph.nodes.values() if n.get("model")})
            datasets = sorted(n.get("dataset_id") or n["name"] for n in graph.nodes.values()
                              if n["kind"] == "dataset")
            raise DataError(
                f"'{name}' names no dataset, feature set, model or deployment in the lineage "
                f"graph; models: {', '.join(models) or '(none registered yet)'}; datasets with "
                f"dependents: {', '.join(datasets) or '(none)'}. Use a dataset id such as "
                "'warehouse/customers', a model name, or 'model v3'"
            ) from None
    return [{"node": _describe(graph, urn),
             "upstream": [{**_describe(graph, u), "depth": d, "relation": r}
                          for u, d, r in graph.upstream(urn)],
             "downstream": [{**_describe(graph, u), "depth": d, "relation": r}
                            for u, d, r in graph.downstream(urn)]} for urn in urns]


# --------------------------------------------------------------------------- recording


def _read_plan(plan: dict[str, Any] | str | Path) -> tuple[dict[str, Any], str]:
    """The plan as a dict and a short hash of it (``plan`` may be the path of plan.json)."""
    if isinstance(plan, dict):
        text = json.dumps(plan, sort_keys=True, default=str)
    else:
        text = Path(plan).read_text(encoding="utf-8")
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()[:10]


def _model_proposals(graph: LineageGraph, model_urn: str) -> list[Any]:
    """The DataHub aspects of a model version, rebuilt from its node and current edges."""
    from autokfp.catalog import datahub as dh

    node = graph.nodes[model_urn]
    upstream = [u for u, _d, _r in graph.upstream(model_urn)]
    feature = next((u for u in upstream if graph.nodes[u]["kind"] == "feature_set"), "")
    datasets = [u for u in upstream if graph.nodes[u]["kind"] == "dataset"]
    deployments = [e["to"] for e in graph.edges
                   if e["from"] == model_urn and e["relation"] == "deployed_as"]
    properties = {**node.get("properties", {}), "aliases": ",".join(node.get("aliases", [])),
                  "dataset_fingerprint": str(node.get("dataset_fingerprint", ""))}
    if node.get("schema_version"):
        properties["dataset_schema_version"] = str(node["schema_version"])
    return dh.model_proposals(node["model"], node["version"], feature, datasets,
                              node.get("metrics", {}), properties, deployments)


def _add_model_version(graph: LineageGraph, model_urn: str, model_name: str, version: str,
                       schema: Any, aliases: list[str] | None, metrics: dict[str, float] | None,
                       properties: dict[str, str] | None) -> None:
    """The model version's node: its aliases, training dataset, test metrics and properties."""
    facts = getattr(schema, "catalog", {}) or {}
    graph.add_node(model_urn, "model_version", f"{model_name} v{version}", model=model_name,
                   version=version, aliases=list(aliases or []),
                   dataset=schema.dataset_id, dataset_fingerprint=schema.fingerprint,
                   schema_version=facts.get("schema_version"),
                   metrics={k: round(float(v), 6) for k, v in (metrics or {}).items()},
                   properties={k: str(v) for k, v in (properties or {}).items()})


def _move_deployment(graph: LineageGraph, deploy_urn: str, deployment: tuple[str, str],
                     model_urn: str, model_name: str, version: str) -> list[str]:
    """The deployment now serves ``model_urn`` alone: the model versions it served before
    (their aspects change too)."""
    namespace, service = deployment
    graph.add_node(deploy_urn, "deployment", f"kserve:{namespace}/{service}",
                   namespace=namespace, service=service, model=model_name,
                   version=version)
    before = [e["from"] for e in graph.edges
              if e["to"] == deploy_urn and e["from"] != model_urn]
    graph.remove_edges_to(deploy_urn, keep_from=model_urn)  # it serves one version
    graph.add_edge(model_urn, deploy_urn, "deployed_as")
    return [u for u in before if u in graph.nodes]


def _changed_proposals(graph: LineageGraph, changed: list[str], feature_urn: str,
                       feature_name: str, source_urn: str, plan_data: dict[str, Any],
                       model_name: str, input_columns: list[str]) -> list[Any]:
    """The DataHub aspects of the feature set and of every model version that changed."""
    from autokfp.catalog import datahub as dh

    proposals = dh.feature_set_proposals(
        feature_urn, feature_name, [source_urn], plan_data,
        {"model": model_name, "input_columns": ",".join(input_columns)})
    for urn in dict.fromkeys(changed):
        proposals += _model_proposals(graph, urn)
    return proposals


def record_model_lineage(
    model_name: str,
    version: str | int,
    schema: Any,
    plan: dict[str, Any] | str | Path,
    *,
    aliases: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    properties: dict[str, str] | None = None,
    deployment: tuple[str, str] | None = None,
    replaced_version: str | int | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Record dataset -> feature set -> model version (-> deployment) after registration.

    Args:
        model_name: the registered model name.
        version: its registered version.
        schema: the training dataset's ``DatasetSchema``.
        plan: the fitted feature plan (a dict, or the path of ``plan.json``).
        aliases: the version's aliases (champion, challenger...).
        metrics: test metrics to show on the MLModel.
        properties: extra text properties for the MLModel (engine, run id, decision...).
        deployment: ``(namespace, service)`` of the InferenceService that serves this version
            (when it became champion).
        replaced_version: the champion it replaced (its aliases and deployment move here).
        settings: state locations (default from the environment).

    Returns:
        The URNs recorded and where the metadata was published.
    """
    from autokfp.catalog import datahub as dh

    settings = settings or Settings.from_env()
    store = CatalogStore(settings)
    plan_data, plan_hash = _read_plan(plan)
    input_columns = [str(c) for group in ("numeric", "categorical", "boolean", "datetime", "text")
                     for c in plan_data.get(group, [])]
    version = str(version)
    source_urn = dh.dataset_urn(schema)
    feature_name = f"{model_name}.features.{plan_hash}"
    feature_urn = dh.feature_set_urn(feature_name)
    model_urn = dh.model_version_urn(model_name, version)
    deploy_urn = dh.deployment_urn(*deployment) if deployment else None

    with store.lock():
        graph = load_lineage(store)
        graph.add_node(source_urn, "dataset", schema.dataset_id, dataset_id=schema.dataset_id,
                       platform=schema.platform, fingerprint=schema.fingerprint)
        graph.add_node(feature_urn, "feature_set", feature_name, model=model_name,
                       sources=[source_urn], input_columns=input_columns,
                       target=plan_data.get("target"), task=plan_data.get("task"))
        _add_model_version(graph, model_urn, model_name, version, schema, aliases, metrics,
                           properties)
        graph.add_edge(source_urn, feature_urn, "features_from")
        graph.add_edge(feature_urn, model_urn, "trained_on")
        changed = [model_urn]
        if deploy_urn and deployment:
            changed += _move_deployment(graph, deploy_urn, deployment, model_urn, model_name,
                                        version)
        if replaced_version is not None:
            old_urn = dh.model_version_urn(model_name, replaced_version)
            if old_urn in graph.nodes:
                graph.nodes[old_urn]["aliases"] = ["previous"]
                changed.append(old_urn)
        save_lineage(graph, store)

    proposals = _changed_proposals(graph, changed, feature_urn, feature_name, source_urn,
                                   plan_data, model_name, input_columns)
    if deploy_urn and deployment:
        proposals += dh.deployment_proposals(deploy_urn, model_urn, version, *deployment)
    published = dh.publish(
        proposals, store.uri("metadata", f"model-{model_name}-v{version}.json"),
        settings.catalog_dir)
    log.info("recorded lineage %s -> %s -> %s%s", schema.dataset_id, feature_name, model_urn,
             f" -> {deploy_urn}" if deploy_urn else "")
    return {"dataset_urn": source_urn, "feature_set_urn": feature_urn, "model_urn": model_urn,
            "deployment_urn": deploy_urn, "published": published.to_dict()}


def record_deployment(model_name: str, version: str | int, namespace: str, service: str,
                      settings: Settings | None = None) -> str:
    """Record that ``service`` in ``namespace`` now serves ``model_name`` ``version``.

    The deployment moves off whichever version served before. Returns its URN.

    Raises:
        DataError: the version has no recorded lineage (it was never registered).
    """
    from autokfp.catalog import datahub as dh

    settings = settings or Settings.from_env()
    store = CatalogStore(settings)
    model_urn = dh.model_version_urn(model_name, version)
    deploy_urn = dh.deployment_urn(namespace, service)
    with store.lock():
        graph = load_lineage(store)
        if model_urn not in graph.nodes:
            raise DataError(f"{model_name} v{version} has no recorded lineage; register it first")
        graph.add_node(deploy_urn, "deployment", f"kserve:{namespace}/{service}",
                       namespace=namespace, service=service, model=model_name,
                       version=str(version))
        before = [e["from"] for e in graph.edges if e["to"] == deploy_urn]
        graph.remove_edges_to(deploy_urn, keep_from=model_urn)
        graph.add_edge(model_urn, deploy_urn, "deployed_as")
        save_lineage(graph, store)
    proposals = dh.deployment_proposals(deploy_urn, model_urn, version, namespace, service)
    for urn in dict.fromkeys([model_urn, *before]):
        if urn in graph.nodes:
            proposals += _model_proposals(graph, urn)
    dh.publish(proposals,
               store.uri("metadata", f"deployment-{namespace}-{service}-v{version}.json"),
               settings.catalog_dir)
    return deploy_urn


def record_scoring_lineage(dataset_id: str, platform: str, model_name: str, version: str | int,
                           output: str, output_platform: str, *,
                           properties: dict[str, str] | None = None,
                           settings: Settings | None = None) -> dict[str, Any]:
    """Record a batch-scoring run: dataset -> model version -> predictions.

    The input dataset keeps its catalogued URN when discovery recorded it (else one is made
    from its platform and id); the predictions become a dataset of their own whose DataHub
    upstream lineage names the input, with the model version in its properties.
    ``output`` must hold no secret (``ScoringTarget.describe()``).

    Returns:
        The URNs recorded and where the metadata was published.
    """
    from datahub.emitter.mce_builder import make_dataset_urn
    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.metadata.schema_classes import (
        DatasetLineageTypeClass,
        DatasetPropertiesClass,
        UpstreamClass,
        UpstreamLineageClass,
    )

    from autokfp.catalog import datahub as dh

    settings = settings or Settings.from_env()
    store = CatalogStore(settings)
    version = str(version)
    try:
        input_urn = store.entry(dataset_id)["urn"]
    except DataError:
        input_urn = make_dataset_urn(platform, dataset_id.replace("/", "."), env=dh.ENV)
    output_name = re.sub(r"^[a-z0-9+]+://", "", output).replace("/", ".").strip(".")
    output_urn = make_dataset_urn(output_platform, output_name, env=dh.ENV)
    model_urn = dh.model_version_urn(model_name, version)
    details = {k: str(v) for k, v in (properties or {}).items()}
    with store.lock():
        graph = load_lineage(store)
        graph.add_node(input_urn, "dataset", dataset_id, dataset_id=dataset_id, platform=platform)
        if model_urn not in graph.nodes:
            graph.add_node(model_urn, "model_version", f"{model_name} v{version}",
                           model=model_name, version=version)
        graph.add_node(output_urn, "dataset", output, dataset_id=output, platform=output_platform,
                       model=model_name, version=version, properties=details)
        graph.add_edge(input_urn, model_urn, "scored_by")
        graph.add_edge(model_urn, output_urn, "predicted")
        save_lineage(graph, store)
    proposals = [
        MetadataChangeProposalWrapper(entityUrn=output_urn, aspect=DatasetPropertiesClass(
            name=output_name, description=f"Predictions of {model_name} v{version} for "
                                          f"{dataset_id}",
            customProperties={"model": model_name, "model_version": version,
                              "model_urn": model_urn, "input": input_urn, **details})),
        MetadataChangeProposalWrapper(entityUrn=output_urn, aspect=UpstreamLineageClass(
            upstreams=[UpstreamClass(dataset=input_urn,
                                     type=DatasetLineageTypeClass.TRANSFORMED)])),
    ]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{model_name}-v{version}-{details.get('batch_id', '')}")
    published = dh.publish(proposals, store.uri("metadata", f"scores-{safe}.json"),
                           settings.catalog_dir)
    log.info("recorded lineage %s -> %s -> %s", dataset_id, model_urn, output_urn)
    return {"dataset_urn": input_urn, "model_urn": model_urn, "output_urn": output_urn,
            "published": published.to_dict()}
