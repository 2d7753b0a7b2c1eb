"""Kubeflow Pipelines v2's task cache, re-implemented from the backend's Go sources, for tests
of what a task's cache key depends on across runs. No KFP backend can run here.

What is re-implemented (kubeflow/pipelines, read on 2026-12-06):

* ``backend/src/v2/cacheutils/cache.go``, ``GenerateCacheKey``: the key is a ``CacheKey``
  message (``api/v2alpha1/cache_key.proto``) holding, per input artifact, the *names* of its
  artifacts; the input parameters' values; per output artifact its type and metadata with
  the URI wiped; the output parameters' types; and the container's image and command+args
  (newer backends add the PVC names, empty here). ``GenerateFingerPrint``: SHA-256 (hex) of
  that message as protojson, re-marshalled by Go's ``encoding/json`` (keys sorted, compact,
  ``<``, ``>`` and ``&`` escaped).
* ``backend/src/v2/driver/cache.go``, ``getFingerPrint``: cmdArgs = container ``command``
  then ``args`` as the spec holds them (placeholders unexpanded); a cache entry is looked up
  only when the task's ``cachingOptions.enableCache`` is set; on a hit
  (``reuseCachedOutputs``) the task publishes the cached execution's output artifacts
  themselves, i.e. the same MLMD artifacts with the same ids.
* ``backend/src/v2/metadata/client.go``, ``toRuntimeArtifact``: an input artifact's name is
  its MLMD id (``strconv.FormatInt(artifact.GetId(), 10)``); a task that runs (no cache hit)
  publishes new artifacts, with new ids. ``provisionOutputs`` (driver): output artifacts
  carry the spec's type and metadata only.
* ``backend/src/v2/driver/resolve.go``, ``resolveInputs``: a task's parameter values are the
  ones its task spec sets (an optional input left unset is not passed: the component applies
  its own default, kubeflow/pipelines#8765), and a ``ParallelFor`` item's
  ``parseJson(string_value)["key"]`` selector gives that field of the item.

The byte layout of Go's float formatting is not reproduced (the values here are strings,
integers and small mappings), so a fingerprint equals the backend's in what it depends on,
not necessarily digit for digit.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# execute(task name, parameter values, input artifact ids, output artifact ids)
#   -> the task's output parameter values
Execute = Callable[[str, dict[str, Any], dict[str, str], dict[str, str]], dict[str, Any]]


def go_json(value: Any) -> str:
    """``json.Marshal`` of Go's ``encoding/json`` on what ``json.Unmarshal`` gave: map keys
    sorted, no spaces, HTML-sensitive characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def cache_key(*, input_artifact_names: dict[str, list[str]], input_parameter_values: dict[str, Any],
              output_artifact_types: dict[str, dict[str, Any]], output_parameter_types: dict[str, str],
              image: str, cmd_args: list[str], pvc_names: list[str] | None = None) -> dict[str, Any]:
    """The ``CacheKey`` message as protojson gives it (empty fields left out, as protojson does)."""
    key: dict[str, Any] = {}
    if input_artifact_names:
        key["inputArtifactNames"] = {name: {"artifactNames": list(ids)}
                                     for name, ids in input_artifact_names.items()}
    if output_artifact_types:
        key["outputArtifactsSpec"] = {name: {"type": dict(kind)}
                                      for name, kind in output_artifact_types.items()}
    if output_parameter_types:
        key["outputParametersSpec"] = dict(output_parameter_types)
    container: dict[str, Any] = {"image": image, "cmdArgs": list(cmd_args)}
    if pvc_names:
        container["pvcNames"] = sorted(set(pvc_names))
    key["containerSpec"] = container
    if input_parameter_values:
        key["inputParameterValues"] = dict(input_parameter_values)
    return key


def fingerprint(key: dict[str, Any]) -> str:
    """``GenerateFingerPrint``: SHA-256 of the key's Go JSON, hex."""
    return hashlib.sha256(go_json(key).encode()).hexdigest()


@dataclass
class TaskRecord:
    """One task's execution in a simulated run."""

    fingerprint: str | None
    cached: bool
    artifacts: dict[str, str]
    parameters: dict[str, Any]


@dataclass
class KfpBackend:
    """The KFP backend's cache across runs of one compiled pipeline (``ir``: document 0 of
    the compiled YAML): MLMD artifact ids and the cache table, kept between ``run`` calls."""

    ir: dict[str, Any]
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _cache: dict[str, TaskRecord] = field(default_factory=dict)

    def run(self, arguments: dict[str, Any], execute: Execute, loop_task: str,
            target: str) -> tuple[dict[str, TaskRecord], list[str]]:
        """Run what ``target`` (a task inside the ``ParallelFor`` ``loop_task`` of the root
        DAG) reads, as the backend would: every root task that feeds the loop, in order
        (executed through ``execute`` unless the cache holds its fingerprint), then, per loop
        item, the fingerprint ``target`` gets. Returns the root tasks' records and the
        target's fingerprints, one per item."""
        root = self.ir["root"]
        tasks = root["dag"]["tasks"]
        # the root DAG's driver gives a pipeline parameter the run leaves unset its default
        defaults = {name: spec.get("defaultValue")
                    for name, spec in root.get("inputDefinitions", {}).get("parameters", {}).items()}
        scope = {**defaults, **arguments}
        records: dict[str, TaskRecord] = {}
        for name in self._feeding(tasks, loop_task):
            records[name] = self._execute(name, tasks[name], scope, records, execute)
        loop = tasks[loop_task]
        loop_inputs = loop.get("inputs", {})
        loop_parameters = {key: self._parameter(spec, scope, records)
                           for key, spec in loop_inputs.get("parameters", {}).items()}
        loop_artifacts = {key: self._artifact(spec, {}, records)
                          for key, spec in loop_inputs.get("artifacts", {}).items()}
        iterator = loop["parameterIterator"]
        items = loop_parameters[iterator["items"]["inputParameter"]]
        if isinstance(items, str):
            items = json.loads(items)
        body = self.ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
        prints = []
        for item in items:
            inner_scope = {**loop_parameters, iterator["itemInput"]: item}
            task = body[target]
            parameters = self._parameters(task, inner_scope, records)
            artifacts = {key: self._artifact(spec, loop_artifacts, records)
                         for key, spec in task.get("inputs", {}).get("artifacts", {}).items()}
            prints.append(fingerprint(self._key(task, parameters, artifacts)))
        return records, prints

    # ------------------------------------------------------------------ the driver's part

    def _feeding(self, tasks: dict[str, Any], name: str) -> list[str]:
        """The root tasks whose outputs reach ``name``'s inputs, producers first."""
        order: list[str] = []

        def visit(task_name: str) -> None:
            inputs = tasks[task_name].get("inputs", {})
            for spec in [*inputs.get("parameters", {}).values(), *inputs.get("artifacts", {}).values()]:
                producer = (spec.get("taskOutputParameter") or spec.get("taskOutputArtifact")
                            or {}).get("producerTask")
                if producer and producer not in order:
                    visit(producer)
                    order.append(producer)

        visit(name)
        return order

    def _parameters(self, task: dict[str, Any], scope: dict[str, Any],
                    records: dict[str, TaskRecord]) -> dict[str, Any]:
        # only what the task spec sets: the driver leaves an unset optional input to the
        # component's own default (resolve.go), so defaults are no part of the key
        return {key: self._parameter(spec, scope, records)
                for key, spec in task.get("inputs", {}).get("parameters", {}).items()}

    @staticmethod
    def _parameter(spec: dict[str, Any], scope: dict[str, Any],
                   records: dict[str, TaskRecord]) -> Any:
        if "runtimeValue" in spec:
            return spec["runtimeValue"]["constant"]
        if "taskOutputParameter" in spec:
            output = spec["taskOutputParameter"]
            return records[output["producerTask"]].parameters[output["outputParameterKey"]]
        value = scope[spec["componentInputParameter"]]
        selector = spec.get("parameterExpressionSelector")
        if selector:
            match = re.fullmatch(r'parseJson\(string_value\)\["([^"]+)"\]', selector)
            assert match, f"selector {selector!r} is not modelled"
            value = (json.loads(value) if isinstance(value, str) else value)[match.group(1)]
        return value

    @staticmethod
    def _artifact(spec: dict[str, Any], inherited: dict[str, str],
                  records: dict[str, TaskRecord]) -> str:
        if "taskOutputArtifact" in spec:
            output = spec["taskOutputArtifact"]
            return records[output["producerTask"]].artifacts[output["outputArtifactKey"]]
        return inherited[spec["componentInputArtifact"]]

    def _key(self, task: dict[str, Any], parameters: dict[str, Any],
             artifacts: dict[str, str]) -> dict[str, Any]:
        component = self.ir["components"][task["componentRef"]["name"]]
        container = self.ir["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        outputs = component.get("outputDefinitions", {})
        return cache_key(
            input_artifact_names={key: [artifact_id] for key, artifact_id in artifacts.items()},
            input_parameter_values=parameters,
            output_artifact_types={key: spec["artifactType"]
                                   for key, spec in outputs.get("artifacts", {}).items()},
            output_parameter_types={key: spec["parameterType"]
                                    for key, spec in outputs.get("parameters", {}).items()},
            image=container["image"],
            cmd_args=[*container.get("command", []), *container.get("args", [])])

    def _execute(self, name: str, task: dict[str, Any], scope: dict[str, Any],
                 records: dict[str, TaskRecord], execute: Execute) -> TaskRecord:
        parameters = self._parameters(task, scope, records)
        artifacts = {key: self._artifact(spec, {}, records)
                     for key, spec in task.get("inputs", {}).get("artifacts", {}).items()}
        caching = task.get("cachingOptions", {}).get("enableCache", False)
        print_ = fingerprint(self._key(task, parameters, artifacts)) if caching else None
        if print_ is not None and print_ in self._cache:
            hit = self._cache[print_]
            return TaskRecord(print_, True, dict(hit.artifacts), dict(hit.parameters))
        component = self.ir["components"][task["componentRef"]["name"]]
        outputs = {key: str(next(self._ids))
                   for key in component.get("outputDefinitions", {}).get("artifacts", {})}
        produced = execute(name, parameters, artifacts, outputs)
        record = TaskRecord(print_, False, outputs, dict(produced))
        if print_ is not None:
            self._cache[print_] = record
        return record
