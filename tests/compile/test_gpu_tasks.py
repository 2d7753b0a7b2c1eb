"""GPU training in the compiled specs of every pipeline, and its CPU fallback.

kfp.local ignores accelerators, node selectors and tolerations, so the compiled YAML is the
only place to check that each training task (autonomous-training's, and the one nested in
drift-monitoring's retraining branch) asks for a GPU, runs in the GPU training image and is
scheduled on the GPU nodes, while nothing else does; and that a CPU-only cluster's compile
(``AUTOKFP_GPU_COUNT=0``) leaves every GPU setting out, so those tasks schedule on ordinary
nodes, where the same image trains on the CPU.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autokfp.pipelines.cluster import ClusterOptions
from autokfp.settings import image
from tests.conftest import compiled_all

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_ENV = ("AUTOKFP_GPU_NODE_SELECTOR", "AUTOKFP_GPU_COUNT", "AUTOKFP_GPU_TOLERATION",
               "AUTOKFP_CONFIG_MAP", "AUTOKFP_SECRET", "AUTOKFP_GCP_SECRET", "AUTOKFP_OPTIONAL_ENV")
# the pipelines that train, and so must hold a GPU training task
TRAINING_PIPELINES = ("autonomous-training", "drift-monitoring")
GPU_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _compile_all(out: Path, **env: str) -> dict[str, Path]:
    with pytest.MonkeyPatch.context() as patch:
        for name in CLUSTER_ENV:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        return compiled_all(out)  # compile_all, once per process and settings


@pytest.fixture(scope="module")
def default_specs(tmp_path_factory) -> dict[str, Path]:
    return _compile_all(tmp_path_factory.mktemp("gpu"))


@pytest.fixture(scope="module")
def cpu_only_specs(tmp_path_factory) -> dict[str, Path]:
    return _compile_all(tmp_path_factory.mktemp("cpu"), AUTOKFP_GPU_COUNT="0")


def _executors(path: Path) -> dict[str, tuple[str, dict, dict]]:
    """executor name -> (the Python function it runs, its container, its Kubernetes settings)."""
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    found = {}
    for name, executor in docs[0]["deploymentSpec"]["executors"].items():
        container = executor["container"]
        command = container["command"] + container.get("args", [])
        function = command[command.index("--function_to_execute") + 1]
        found[name] = (function, container, k8s.get(name, {}))
    return found


def test_every_training_task_asks_for_a_gpu_in_the_gpu_image_on_gpu_nodes(default_specs) -> None:
    training_image = image("training")
    for pipeline, path in default_specs.items():
        trains = 0
        for name, (function, container, k8s) in _executors(path).items():
            resources = container.get("resources", {})
            where = f"{pipeline}: {name} ({function})"
            if function == "train_model":
                trains += 1
                accelerator = resources["accelerator"]
                assert (accelerator["resourceType"], accelerator["resourceCount"]) == (
                    "nvidia.com/gpu", "1"), where
                assert container["image"] == training_image, where
                assert k8s["nodeSelector"]["labels"] == GPU_SELECTOR, where
                assert k8s["tolerations"] == [GPU_TOLERATION], where
            else:
                # every other task stays off the GPU nodes and out of the GPU image
                assert "accelerator" not in resources, where
                assert container["image"] == image("runtime"), where
                assert "nodeSelector" not in k8s and "tolerations" not in k8s, where
        assert trains == (1 if pipeline in TRAINING_PIPELINES else 0), pipeline


@pytest.mark.parametrize("specs", ["default_specs", "cpu_only_specs"])
def test_the_refit_task_gets_the_training_task_s_cpu_and_memory_without_a_gpu(
        specs, request) -> None:
    """The refit trains again (twice, an H2O JVM with a 4G heap by default): on an ordinary
    task's 1 CPU and 4G it would be killed for memory, or start and fit far slower."""
    options = ClusterOptions()
    assert (options.training_cpu, options.training_memory) != (options.task_cpu,
                                                               options.task_memory)
    for pipeline in TRAINING_PIPELINES:
        executors = _executors(request.getfixturevalue(specs)[pipeline])
        by_function: dict[str, list[dict]] = {}
        for function, container, _k8s in executors.values():
            by_function.setdefault(function, []).append(container)
        (train,), (refit,) = by_function["train_model"], by_function["refit_model"]
        for key in ("resourceCpuRequest", "resourceMemoryRequest"):
            assert refit["resources"][key] == train["resources"][key], (pipeline, key)
        assert refit["resources"]["resourceCpuRequest"] == options.training_cpu
        assert refit["resources"]["resourceMemoryRequest"] == options.training_memory
        # on the CPU, in the runtime image (it refits small tables only)
        assert "accelerator" not in refit["resources"], pipeline
        assert refit["image"] == image("runtime"), pipeline


def test_the_gpu_image_is_what_the_build_script_makes_by_default() -> None:
    """The tag compiled into training tasks is the one scripts/build_images.sh gives the
    image it builds with tensorflow[and-cuda] unless told --accelerator cpu."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_images.sh"), "--print-tags", "--image", "training"],
        capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert result.stdout.split() == ["training", image("training", registry="ghcr.io/autokfp")]
    script = (ROOT / "scripts" / "build_images.sh").read_text(encoding="utf-8")
    assert "\naccelerator=gpu\n" in script


def test_a_cpu_only_compile_drops_every_gpu_setting_and_keeps_the_training_image(
        cpu_only_specs) -> None:
    for pipeline in TRAINING_PIPELINES:
        executors = _executors(cpu_only_specs[pipeline])
        training = [(name, c, k) for name, (f, c, k) in executors.items() if f == "train_model"]
        assert len(training) == 1, pipeline
        for name, container, k8s in training:
            resources = container["resources"]
            # no GPU asked for, no GPU node required or tolerated: any node can run it
            assert "accelerator" not in resources, (pipeline, name)
            assert "nodeSelector" not in k8s and "tolerations" not in k8s, (pipeline, name)
            # still the training image (it trains on the CPU when it sees no GPU) with the
            # training task's CPU and memory, and still the namespace's configuration
            assert container["image"] == image("training"), (pipeline, name)
            assert resources["resourceCpuRequest"] == "4", (pipeline, name)
            assert resources["resourceMemoryRequest"] == "16G", (pipeline, name)
            assert k8s["configMapAsEnv"][0]["configMapName"] == "autokfp-config"
    text = "".join(path.read_text(encoding="utf-8") for path in cpu_only_specs.values())
    assert "nvidia.com/gpu" not in text

