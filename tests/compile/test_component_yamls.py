"""``autokfp compile --components``: one loadable component YAML per component."""

# no ``from __future__ import annotations``: the inline pipeline's ``config: dict`` must stay a
# type for KFP, not a string
from kfp import compiler, components, dsl

from autokfp.edge.compilation import compile_components, validate_pipeline_yaml
from autokfp.settings import image


def test_component_yamls_load_and_build_a_user_pipeline(tmp_path) -> None:
    written = compile_components(tmp_path / "components")
    from components import ALL_COMPONENTS

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
