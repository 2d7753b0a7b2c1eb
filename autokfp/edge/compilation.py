"""Compile every pipeline to KFP YAML and validate it strictly before anyone uploads it.

Like ``autokfp.edge.local`` this is an edge module that imports kfp. Validation: document 0
parses into ``PipelineSpec`` with unknown fields rejected, each executor of the Kubernetes
platform spec parses into ``KubernetesExecutorConfig``, and kfp can load the file back as a
component.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from autokfp.errors import AutokfpError


class CompilationError(AutokfpError):
    """A pipeline did not compile into a valid KFP spec."""


def validate_pipeline_yaml(path: str | Path) -> dict:
    """Parse a compiled pipeline strictly; return its PipelineSpec as a dict."""
    from google.protobuf import json_format
    from kfp import components
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    documents = list(yaml.safe_load_all(Path(path).read_text()))
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


def compile_all(out_dir: str | Path) -> dict[str, Path]:
    """Compile each pipeline in ``pipelines.PIPELINES`` into ``out_dir/<name>.yaml``."""
    from kfp import compiler

    from pipelines import PIPELINES, ClusterOptions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = ClusterOptions.from_env()
    written = {}
    for name, build in PIPELINES.items():
        target = out / f"{name}.yaml"
        handle, temp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".yaml")
        os.close(handle)
        try:
            compiler.Compiler().compile(build(options), temp)
            validate_pipeline_yaml(temp)
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        written[name] = target
    return written
