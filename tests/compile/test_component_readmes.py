"""The generated component READMEs are current, and their pipeline snippets compile."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from autokfp import components
from autokfp.settings import code_fingerprint

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_component_readmes.py"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("generate_component_readmes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_readmes_are_up_to_date(generator, capsys) -> None:
    assert generator.main(["--check"]) == 0, capsys.readouterr().out
    assert "up to date" in capsys.readouterr().out


def test_check_mode_reports_a_stale_readme(generator, tmp_path, monkeypatch, capsys) -> None:
    stale = tmp_path / "README.md"
    stale.write_text("old text\n")
    monkeypatch.setattr(generator, "render_all", lambda: {stale: "new text\n"})
    assert generator.main(["--check"]) == 1
    assert f"out of date: {stale}" in capsys.readouterr().out
    assert stale.read_text() == "old text\n"  # --check never writes


def test_every_component_and_argument_is_documented() -> None:
    index = (Path(components.__file__).parent / "README.md").read_text()
    for component in components.ALL_COMPONENTS:
        function = component.python_func.__name__
        assert f"[`{function}`]" in index
        readme = Path(component.python_func.__code__.co_filename).with_name("README.md")
        text = readme.read_text()
        for name in component.component_spec.inputs:
            assert re.search(rf"^\| `{name}` \| `[^`]+` \| \S", text, re.MULTILINE), (readme, name)
        # the image's repository and version; its code fingerprint is documented as <code>
        repository, tag = component.component_spec.implementation.container.image.rsplit(":", 1)
        version, fingerprint = tag.rsplit("-", 1)
        assert f"{repository.rsplit('/', 1)[1]}:{version}-<code>" in text
        assert fingerprint == code_fingerprint() and fingerprint not in text


@pytest.mark.parametrize("component", components.ALL_COMPONENTS, ids=lambda c: c.name)
def test_use_in_a_pipeline_snippet_compiles(component, tmp_path, monkeypatch) -> None:
    readme = Path(component.python_func.__code__.co_filename).with_name("README.md").read_text()
    section = readme.split("## Use in a pipeline", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    # dont_inherit: this file's `from __future__ import annotations` must not leak into the
    # snippet (kfp reads the pipeline's annotations as real types)
    exec(compile(snippet, f"{component.name}/README.md", "exec", dont_inherit=True), {})
    (compiled,) = tmp_path.glob("*.yaml")
    tasks = next(yaml.safe_load_all(compiled.read_text()))["root"]["dag"]["tasks"]
    assert component.name in tasks


@pytest.fixture(scope="module")
def component_yamls(tmp_path_factory) -> Path:
    """``autokfp compile --components autokfp-components`` in a folder of its own."""
    from autokfp.edge.compilation import compile_components

    root = tmp_path_factory.mktemp("yamls")
    compile_components(root / "autokfp-components")
    return root


@pytest.mark.parametrize("component", components.ALL_COMPONENTS, ids=lambda c: c.name)
def test_the_compiled_yaml_snippet_builds_a_configured_pipeline(component, component_yamls,
                                                                monkeypatch) -> None:
    from autokfp.pipelines.cluster import CONFIG_KEYS

    readme = Path(component.python_func.__code__.co_filename).with_name("README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme.split("## Use the compiled YAML", 1)[1],
                        re.DOTALL).group(1)
    assert not re.search(r"^(from|import) (autokfp|components|pipelines)", snippet, re.MULTILINE)
    monkeypatch.chdir(component_yamls)
    exec(compile(snippet, f"{component.name}/README.md", "exec", dont_inherit=True), {})
    spec, platform = yaml.safe_load_all((component_yamls / f"{component.name}-from-yaml.yaml")
                                        .read_text())
    assert component.name in spec["root"]["dag"]["tasks"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    ours = executors[f"exec-{component.name}"]
    assert {e["configMapKey"] for e in ours["configMapAsEnv"][0]["keyToEnv"]} == set(CONFIG_KEYS)
    assert ours["secretAsEnv"][0]["secretName"] == "autokfp-credentials"
    containers = {n for n, e in spec["deploymentSpec"]["executors"].items() if "container" in e}
    assert set(executors) == containers  # every task that runs a container is configured
    container = spec["deploymentSpec"]["executors"][f"exec-{component.name}"]["container"]
    assert container["image"] == component.component_spec.implementation.container.image
    if "autokfp-training" in container["image"]:  # the GPU request survives the compile
        assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert container["resources"]["accelerator"]["resourceCount"] == "1"
        assert ours["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert ours["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                        "effect": "NoSchedule"}]
    else:
        assert "accelerator" not in container.get("resources", {})
