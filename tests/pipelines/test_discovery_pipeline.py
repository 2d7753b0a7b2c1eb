"""The ``discovery`` pipeline: valid compiled YAML for the cluster, and a real kfp.local run
that crawls a folder and a SQLite database into the catalog."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import yaml
from kfp import compiler

from autokfp.edge.compilation import validate_pipeline_yaml
from autokfp.pipelines import PIPELINES, ClusterOptions
from autokfp.pipelines.discovery.discovery import build_discovery
from tests.conftest import compiled_all


def _locations(tmp_path: Path, churn_frame) -> str:
    """A folder (a Parquet file and an empty CSV) and a SQLite database, as the discovery
    form's comma-separated sources."""
    config = _config(tmp_path, churn_frame)
    return ",".join(s.get("path") or s["url"] for s in config["sources"])


def _config(tmp_path: Path, churn_frame) -> dict:
    folder = tmp_path / "files"
    folder.mkdir()
    churn_frame.head(200).to_parquet(folder / "customers.parquet", index=False)
    (folder / "broken.csv").write_bytes(b"")
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as connection:
        churn_frame.head(300).assign(signup_date=churn_frame["signup_date"].head(300).astype(
            str)).to_sql("customers", connection, index=False)
    return {"name": "churn-disc",
            "sources": [{"name": "files", "kind": "folder", "path": str(folder)},
                        {"name": "warehouse", "kind": "sql", "url": f"sqlite:///{db}"}],
            "training": {"dataset": "warehouse/customers", "target": "churned"}}


def test_discovery_compiles_into_a_valid_schedulable_pipeline(tmp_path, monkeypatch) -> None:
    for name in ("AUTOKFP_GPU_NODE_SELECTOR", "AUTOKFP_GPU_COUNT", "AUTOKFP_CONFIG_MAP",
                 "AUTOKFP_SECRET", "AUTOKFP_GPU_TOLERATION"):
        monkeypatch.delenv(name, raising=False)
    assert PIPELINES["discovery"] is build_discovery
    written = compiled_all(tmp_path / "compiled")  # compile_all, once per process
    assert set(written) >= {"autonomous-training", "discovery"}
    spec = validate_pipeline_yaml(written["discovery"])
    assert spec["pipelineInfo"]["name"] == "discovery"
    assert list(spec["root"]["dag"]["tasks"]) == ["catalog-sources"]
    # the run form: typed, described, the config an optional override (no example bucket)
    form = spec["root"]["inputDefinitions"]["parameters"]
    assert {k: (v["parameterType"], v["defaultValue"]) for k, v in form.items()} == {
        "sources": ("STRING", "from config"), "include": ("STRING", "from config"),
        "config": ("STRUCT", {})}
    assert "gs://" in form["sources"]["description"] and "${PG_PASSWORD}" in form["sources"]["description"]
    assert "*.parquet" in form["include"]["description"]
    assert "override" in form["config"]["description"]
    assert {k: v["componentInputParameter"] for k, v in spec["root"]["dag"]["tasks"][
        "catalog-sources"]["inputs"]["parameters"].items()} == {k: k for k in form}

    docs = list(yaml.safe_load_all(written["discovery"].read_text()))
    executor = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        "exec-catalog-sources"]
    env_from_config = {e["envVar"] for e in executor["configMapAsEnv"][0]["keyToEnv"]}
    assert {"AUTOKFP_ARTIFACT_ROOT", "DATAHUB_GMS_URL"} <= env_from_config
    secret_env = {e["envVar"] for e in executor["secretAsEnv"][0]["keyToEnv"]}
    assert "DATAHUB_GMS_TOKEN" in secret_env  # by name only: no value is compiled in
    container = docs[0]["deploymentSpec"]["executors"]["exec-catalog-sources"]["container"]
    assert "autokfp-runtime" in container["image"]
    assert "resources" in container and "accelerator" not in json.dumps(container)

    options = ClusterOptions(config_map="team-config", secret="team-secrets")
    target = tmp_path / "custom.yaml"
    compiler.Compiler().compile(build_discovery(options), str(target))
    text = target.read_text()
    assert "team-config" in text and "team-secrets" in text


def test_discovery_runs_locally_and_fills_the_catalog(tmp_path, autokfp_home, churn_frame,
                                                      monkeypatch) -> None:
    from kfp import local

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    autokfp_home.export()
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=autokfp_home.pipeline_root, raise_on_error=True)
    # the run form alone: no run config; each source is named after its last path part
    run = build_discovery()(sources=_locations(tmp_path, churn_frame))
    assert run.output == 0  # no breaking change on a first crawl

    index = json.loads((Path(autokfp_home.artifact_root) / "catalog" / "index.json").read_text())
    datasets = index["datasets"]
    assert sorted(datasets) == ["files/broken.csv", "files/customers.parquet",
                                "warehouse/customers"]
    assert datasets["warehouse/customers"]["latest_version"] == 1
    assert "0 rows" in datasets["files/broken.csv"]["last_error"]
    reports = list(Path(autokfp_home.pipeline_root).rglob("report"))
    assert reports and "warehouse/customers" in reports[0].read_text()
    catalogs = list(Path(autokfp_home.pipeline_root).rglob("catalog"))
    proposals = json.loads(catalogs[0].read_text())
    aspects: dict[str, list[str]] = {}
    for proposal in proposals:
        aspects.setdefault(proposal["entityUrn"], []).append(proposal["aspectName"])
    # the two readable datasets (the empty CSV is not published), each with the aspects
    # DataHub's own sources write, a live status first (stateful soft-delete undoes it)
    assert len(aspects) == 2
    for urn, names in aspects.items():
        assert names == ["status", "datasetProperties", "schemaMetadata", "datasetProfile",
                         "globalTags"], urn
    assert (autokfp_home.catalog_dir / "datahub-lite.db").exists()
