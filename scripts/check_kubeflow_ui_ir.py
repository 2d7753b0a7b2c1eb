"""Print the IR figures docs/kubeflow-ui.md quotes for issue 15, from a fresh compile.

    python scripts/check_kubeflow_ui_ir.py

Compiles every pipeline and component into a temporary folder and reads the YAML back:
each pipeline's run-form parameters (count, described, description lengths, any ``""``
default), the training pipeline's parameters, its tasks without dependencies and its
output artifact types, the schedule placeholder in drift-monitoring, and the component
YAMLs (how many, which need a ``config``, their images).
"""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path

import yaml
from kfp.components import load_component_from_file

from autokfp.edge.compilation import compile_all, compile_components


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="kubeflow-ui-ir-"))
    pipelines = compile_all(out / "compiled")
    compile_components(out / "components")
    print("compiled into", out)
    for name, path in sorted(pipelines.items()):
        spec = next(yaml.safe_load_all(Path(path).read_text()))
        params = spec["root"]["inputDefinitions"].get("parameters", {})
        lengths = [len(p.get("description", "")) for p in params.values()]
        empty = [k for k, p in params.items() if p.get("defaultValue") == ""]
        described = sum(1 for p in params.values() if p.get("description"))
        print(f"{name}: {len(params)} parameters, {described} described "
              f"({min(lengths, default=0)}-{max(lengths, default=0)} characters), "
              f"'' defaults: {empty or 'none'}")
        if name == "autonomous-training":
            for key, p in params.items():
                print(f"   {key}: {p['parameterType']} default={p.get('defaultValue')!r} "
                      f"optional={p.get('isOptional', False)}")
            roots = [t for t, task in spec["root"]["dag"]["tasks"].items()
                     if not task.get("dependentTasks")]
            print("   tasks without dependencies:", roots)
            kinds: collections.Counter[str] = collections.Counter()
            for component in spec["components"].values():
                artifacts = component.get("outputDefinitions", {}).get("artifacts") or {}
                kinds.update(a["artifactType"]["schemaTitle"] for a in artifacts.values())
            print("   component output artifacts:", dict(sorted(kinds.items())))
            print("   register-model gets {{$.pipeline_job_uuid}}:",
                  "{{$.pipeline_job_uuid}}" in json.dumps(spec))
        if name == "drift-monitoring":
            text = Path(path).read_text()
            print("   {{$.pipeline_job_schedule_time_utc}}:",
                  text.count("{{$.pipeline_job_schedule_time_utc}}"),
                  "[[ScheduledTime]]:", text.count("[[ScheduledTime]]"),
                  "window_end default:", params.get("window_end", {}).get("defaultValue"))
    files = sorted((out / "components").rglob("*.yaml"))
    required, images = [], set()
    for path in files:
        inputs = load_component_from_file(str(path)).component_spec.inputs or {}
        if "config" in inputs and not inputs["config"].optional:
            required.append(path.name)
        document = next(yaml.safe_load_all(path.read_text()))
        for executor in document.get("deploymentSpec", {}).get("executors", {}).values():
            images.add(executor["container"]["image"].rsplit("/", 1)[-1].split(":")[0])
    print(f"component YAMLs: {len(files)}; with a required config: {required or 'none'}; "
          f"images: {', '.join(sorted(images))}")


if __name__ == "__main__":
    main()
