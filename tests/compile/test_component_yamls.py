"""``autokfp compile --components``: one loadable component YAML per component."""

# no ``from __future__ import annotations``: the inline pipeline's ``config: dict`` must stay a
# type for KFP, not a string
from kfp import compiler, components, dsl

from autokfp.edge.compilation import compile_components, validate_pipeline_yaml
from autokfp.settings import image


def test_component_yamls_load_and_build_a_user_pipeline(tmp_path) -> None:
    written = compile_components(tmp_path / "components")
    from autokfp.components import ALL_COMPONENTS

    assert len(written) == len(ALL_COMPONENTS)
    discover = components.load_component_from_file(str(written["discover"]))
    profile = components.load_component_from_file(str(written["profile"]))
    catalog = components.load_component_from_file(str(written["catalog_sources"]))
    executor = next(iter(discover.pipeline_spec.deployment_spec["executors"].values()))
    assert executor["container"]["image"] == image("runtime")  # the image is baked in

    @dsl.pipeline(name="user-pipeline")
    def user_pipeline(config: dict):
        found = discover(config=config)
        profile(config=config, dataset=found.outputs["dataset"], schema=found.outputs["schema"])
        catalog(config=config)

    target = tmp_path / "user.yaml"
    compiler.Compiler().compile(user_pipeline, str(target))
    spec = validate_pipeline_yaml(target)
    assert {"discover", "profile", "catalog-sources"} <= set(spec["root"]["dag"]["tasks"])


def test_a_user_pipeline_of_loaded_component_yamls_runs_locally(
    tmp_path, autokfp_home, churn_frame, monkeypatch
) -> None:
    import json
    from pathlib import Path

    from kfp import local

    # a loaded lightweight component YAML still runs under SubprocessRunner (it is not a
    # container component), so the reused components run here for real
    written = compile_components(tmp_path / "components")
    catalog = components.load_component_from_file(str(written["catalog_sources"]))
    discover = components.load_component_from_file(str(written["discover"]))
    profile = components.load_component_from_file(str(written["profile"]))
    folder = tmp_path / "files"
    folder.mkdir()
    churn_frame.head(300).to_parquet(folder / "customers.parquet", index=False)
    config = {"name": "churn-reuse", "sources": [{"name": "files", "kind": "folder",
                                                  "path": str(folder)}],
              "training": {"dataset": "files/customers.parquet", "target": "churned"}}

    @dsl.pipeline(name="user-pipeline")
    def user_pipeline(config: dict):
        crawled = catalog(config=config)
        found = discover(config=config).after(crawled)
        profile(config=config, dataset=found.outputs["dataset"], schema=found.outputs["schema"])

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    autokfp_home.export()
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=autokfp_home.pipeline_root, raise_on_error=True)
    user_pipeline(config=config)
    schemas = [p for p in Path(autokfp_home.pipeline_root).rglob("schema") if p.is_file()]
    assert schemas and json.loads(schemas[0].read_text())["row_count"] == 300
    assert [p for p in Path(autokfp_home.pipeline_root).rglob("report") if p.is_file()]
