"""Compile every pipeline to KFP YAML and validate it strictly before anyone uploads it.

Like ``autokfp.edge.local`` this is an edge module that imports kfp. Validation: document 0
parses into ``PipelineSpec`` with unknown fields rejected, each executor of the Kubernetes
platform spec parses into ``KubernetesExecutorConfig``, and kfp can load the file back as a
component.

The oldest backend supported is KFP 2.2.0 (Kubeflow 1.9), whose driver rejects fields its
platform spec does not know. kfp-kubernetes 2.x writes a Secret or ConfigMap name twice, as
``secretName`` and as the newer ``secretNameParameter``; when the name is a literal the newer
copy is dropped (newer backends read ``secretName`` too), and so is ``optional: false``,
so the YAML parses on both. ``optional: true`` is only written when asked for
(``ClusterOptions.optional_env``, KFP 2.5 or later).
``tests/compile/test_backend_compat.py`` checks that against kfp-kubernetes 1.2.0's protos.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from autokfp.errors import AutokfpError


class CompilationError(AutokfpError):
    """A pipeline did not compile into a valid KFP spec."""


# libyaml's parser when PyYAML has it: the same documents, several times faster than the
# pure-Python one (a compile of drift-monitoring parses its YAML twice here). The file is
# still written by the pure-Python emitter: libyaml's wraps long strings differently, and
# the compiled YAML stays byte for byte what it was.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def validate_pipeline_yaml(path: str | Path) -> dict:
    """Parse a compiled pipeline strictly; return its PipelineSpec as a dict."""
    from google.protobuf import json_format
    from kfp import components
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    documents = list(yaml.load_all(Path(path).read_text(), Loader=_LOADER))
    if not documents:
        raise CompilationError(f"{path} is empty")
    spec = pipeline_spec_pb2.PipelineSpec()
    try:
        json_format.ParseDict(documents[0], spec, ignore_unknown_fields=False)
        if len(documents) > 1:
            executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
            for executor in executors.values():
                config = kubernetes_executor_config_pb2.KubernetesExecutorConfig()
                json_format.ParseDict(executor, config, ignore_unknown_fields=False)
        components.load_component_from_file(str(path))
    except (json_format.ParseError, KeyError, TypeError, ValueError) as exc:
        raise CompilationError(f"{path} is not a valid KFP pipeline: {exc}") from exc
    return documents[0]


MINIMUM_KFP_BACKEND = "2.2.0"  # Kubeflow 1.9
# (message field holding the literal name, newer field holding the same name as a parameter)
_NAME_PAIRS = (("secretName", "secretNameParameter"), ("configMapName", "configMapNameParameter"),
               ("pvcName", "pvcNameParameter"))


def _drop_fields_old_backends_reject(node: object) -> None:
    """Remove what KFP 2.2's platform spec does not know but that means nothing here: a
    ``*NameParameter`` repeating a literal name, and ``optional: false`` (the default)."""
    if isinstance(node, dict):
        for literal, parameter in _NAME_PAIRS:
            if node.get(literal) and parameter in node:
                del node[parameter]
        if node.get("optional") is False and ("secretName" in node or "configMapName" in node):
            del node["optional"]
        for value in node.values():
            _drop_fields_old_backends_reject(value)
    elif isinstance(node, list):
        for value in node:
            _drop_fields_old_backends_reject(value)


def compile_pipeline_file(build: object, path: str | Path) -> None:
    """Compile pipeline function ``build`` into ``path`` (mode 0644), for every supported
    backend, and validate it; a failed compile leaves no file behind."""
    from kfp import compiler

    target = Path(path)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".yaml")
    os.close(handle)
    try:
        compiler.Compiler().compile(build, temp)
        documents = list(yaml.load_all(Path(temp).read_text(), Loader=_LOADER))
        if len(documents) > 1:
            _drop_fields_old_backends_reject(documents[1])
            header = "".join(line for line in Path(temp).read_text().splitlines(keepends=True)
                             if line.startswith("#"))
            Path(temp).write_text(header + yaml.safe_dump_all(documents, sort_keys=False))
        validate_pipeline_yaml(temp)
        os.chmod(temp, 0o644)  # mkstemp makes 0600; the file is read by other tools and users
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def compile_all(out_dir: str | Path) -> dict[str, Path]:
    """Compile each pipeline in ``autokfp.pipelines.PIPELINES`` into ``out_dir/<name>.yaml``."""
    from autokfp.pipelines import PIPELINES, ClusterOptions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = ClusterOptions.from_env()
    written = {}
    for name, build in PIPELINES.items():
        target = out / f"{name}.yaml"
        compile_pipeline_file(build(options), target)
        written[name] = target
    return written


def compile_components(out_dir: str | Path) -> dict[str, Path]:
    """Compile each component into ``out_dir/<stage>/<name>.yaml`` for reuse in other pipelines.

    Each YAML loads with ``kfp.components.load_component_from_file`` and carries its image.
    GPU requests are task settings in KFP, not part of a component YAML: a task of
    ``training/train_model.yaml`` gets them from the pipeline that loads it
    (``autokfp.pipelines.cluster.configure_training_task(task, options)``, or kfp-kubernetes as
    each component README's "Use the compiled YAML" shows). ``training/train_model_on_gpu.yaml``
    (``TRAIN_MODEL_ON_GPU``) has them baked in: ``train_model`` in a one-task pipeline with the
    compile-time ``ClusterOptions.from_env()`` (GPU request, node selector, tolerations,
    resources, ConfigMap/Secret env), which kfp 2.17 keeps when it is loaded into another
    pipeline (see ``autokfp.pipelines.training.train_model_on_gpu``).
    """
    from kfp import compiler

    from autokfp.components import ALL_COMPONENTS, component_folders
    from autokfp.pipelines import ClusterOptions
    from autokfp.pipelines.training.train_model_on_gpu import build_train_model_on_gpu

    out = Path(out_dir)
    written = {}
    for folder, component in zip(component_folders(), ALL_COMPONENTS, strict=True):
        target = out / folder.parent.name / f"{folder.name}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(component, str(target))
        written[folder.name] = target
    target = out / "training" / f"{TRAIN_MODEL_ON_GPU}.yaml"
    compile_pipeline_file(build_train_model_on_gpu(ClusterOptions.from_env()), target)
    written[TRAIN_MODEL_ON_GPU] = target
    return written


TRAIN_MODEL_ON_GPU = "train_model_on_gpu"  # compile_components' extra YAML
