"""Resolve an image's dependency layers with pip, without building it (no Docker, no GPU).

    python scripts/resolve_image_layers.py --accelerator gpu

images/Dockerfile installs three requirement lists, one layer each (core-deps, keras-deps,
engine-deps), every list complete and pinned by constraints.txt. This runs
``pip install --dry-run --ignore-installed --report`` on each list as its layer does (the
lists made by images/requirements.py from pyproject.toml, ``-c constraints.txt``) and checks
what an image build would otherwise only show after many minutes and gigabytes:

- every list resolves, and only to the versions constraints.txt pins (nothing unpinned);
- each layer's distributions are all in the next one at the same version (a layer only adds);
- with ``--accelerator gpu``: TensorFlow is the CUDA build's ``tensorflow`` (not
  ``tensorflow-cpu``), and every ``nvidia-*`` wheel comes through ``tensorflow[and-cuda]``
  (the image's one CUDA stack); with ``cpu``: no ``nvidia-*`` wheel at all.

It prints each layer's count and the CUDA wheels with their versions, and exits 1 when a
check fails. pip fetches metadata from the index (PEP 658), not the wheels: about 3 minutes
for the GPU lists on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "images"))
from requirements import requirements  # noqa: E402  (images/requirements.py)

# the layers of images/Dockerfile and the extras of each (its `requirements` stage)
LAYERS = {"core": [], "keras": ["{tensorflow}"], "engine": ["pipelines", "{tensorflow}"]}


def pins(constraints: Path) -> dict[str, str]:
    found = {}
    for line in constraints.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            requirement = Requirement(line)
            found[canonicalize_name(requirement.name)] = str(requirement.specifier)[2:]
    return found


def resolve(python: str, listed: list[str], constraints: Path, work: Path, name: str) -> dict:
    listing, report = work / f"{name}.txt", work / f"{name}.json"
    listing.write_text("\n".join(listed) + "\n", encoding="utf-8")
    done = subprocess.run(
        [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", str(report), "-c", str(constraints),
         "-r", str(listing)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: the {name} layer does not resolve:\n{done.stderr[-3000:]}")
    return json.loads(report.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter whose pip resolves (CPython 3.11 as the images)")
    args = parser.parse_args()
    tensorflow = "gpu" if args.accelerator == "gpu" else "keras"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = pins(ROOT / "constraints.txt")
    problems: list[str] = []
    layers: dict[str, dict[str, str]] = {}
    requires: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extras in LAYERS.items():
            listed = requirements(project, [e.format(tensorflow=tensorflow) for e in extras])
            report = resolve(args.python, listed, ROOT / "constraints.txt", Path(tmp), name)
            got = {}
            for item in report["install"]:
                dist = canonicalize_name(item["metadata"]["name"])
                got[dist] = item["metadata"]["version"]
                requires[dist] = item["metadata"].get("requires_dist") or []
            off = sorted(f"{d}=={v} (constraints.txt: {pinned.get(d, 'not pinned')})"
                         for d, v in got.items() if pinned.get(d) != v)
            if off:
                problems.append(f"{name}: not as pinned: {', '.join(off)}")
            layers[name] = got
            print(f"{name}-deps: {len(got)} distributions, all as constraints.txt pins"
                  if not off else f"{name}-deps: {len(got)} distributions, {len(off)} not as pinned")
    names = list(LAYERS)
    for lower, upper in zip(names, names[1:]):
        missing = sorted(f"{d}=={v}" for d, v in layers[lower].items()
                         if layers[upper].get(d) != v)
        if missing:
            problems.append(f"{upper}-deps drops or changes what {lower}-deps installed: "
                            f"{', '.join(missing)}")
    engine = layers["engine"]
    cuda = sorted(d for d in engine if d.startswith("nvidia-"))
    if args.accelerator == "gpu":
        if "tensorflow" not in engine or "tensorflow-cpu" in engine:
            problems.append("the GPU layers must install tensorflow (the CUDA build), "
                            "not tensorflow-cpu")
        # who asks for each CUDA wheel: tensorflow[and-cuda], or another CUDA wheel
        for dist in cuda:
            askers = {asker for asker, needs in requires.items() if asker in engine
                      for need in needs
                      if canonicalize_name(re.match(r"[A-Za-z0-9_.\-]+", need).group(0)) == dist
                      and (asker.startswith("nvidia-")
                           or (asker == "tensorflow" and "and-cuda" in need))}
            if not askers:
                problems.append(f"{dist} comes from somewhere else than tensorflow[and-cuda]")
        print(f"tensorflow {engine.get('tensorflow')}; CUDA as {len(cuda)} wheels: "
              + ", ".join(f"{d} {engine[d]}" for d in cuda))
    elif cuda:
        problems.append(f"the CPU layers install CUDA wheels: {', '.join(cuda)}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
