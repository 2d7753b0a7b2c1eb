"""Where a local ``autokfp run`` spends its time outside the engines: each task's imports
against its work, side by side with the engines' own seconds (the anchor).

kfp.local starts every pipeline task as a new Python process, so each task pays the
interpreter's start and its imports before it does any work. This script runs the whole
pipeline as ``scripts/benchmark_suite.py`` does (``autokfp run`` on one bundled table, a
fresh ``AUTOKFP_HOME``) with ``PYTHONPROFILEIMPORTTIME=1``, so every Python process the run
starts reports each import's time on its stderr, which kfp.local copies into the run log.
From that log it prints, per task:

* ``wall``: the task's seconds (kfp.local's ``Executing task`` to ``finished``);
* ``imports``: the seconds its processes spent importing (the top-level imports' cumulative
  times, lazy imports inside functions included), split by package (each module's own
  time goes to the package it belongs to, so ``autokfp`` is autokfp's own modules);
* ``rest``: wall minus imports: the work, and the interpreter's start (``python -c pass``,
  printed once);

then the engines' own training seconds (from the packages the run wrote) and the share of
the wall time outside them. Imports in a training task's engine child (TensorFlow in
AutoKeras's) are counted under that task; the engine's own seconds exclude them.

    python scripts/benchmark_task_startup.py --table wine --budget 60 --out /tmp/bench --tag x
    python scripts/benchmark_task_startup.py --log HOME/logs/run-....log   # an earlier run

The import profiler adds a little to every import; compare runs made the same way.
The machine's load average at the end is printed: on a shared machine it moves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autokfp.edge.taskfork import SWITCH_ENV  # noqa: E402 - 0: a new interpreter per task

# packages shown in their own column (by top-level module name); the rest is "other"
GROUPS = {
    "kfp": ("kfp", "google", "kubernetes", "yaml", "docstring_parser", "requests_toolbelt"),
    "pandas/arrow": ("pandas", "numpy", "pyarrow"),
    "mlflow": ("mlflow", "sqlalchemy", "alembic", "flask", "werkzeug", "opentelemetry", "git"),
    "sklearn/scipy": ("sklearn", "scipy", "joblib"),
    "tensorflow": ("tensorflow", "keras", "autokeras", "keras_tuner", "tf_keras"),
    "h2o": ("h2o",),
    "evidently": ("evidently",),
    "matplotlib": ("matplotlib", "PIL"),
    "autokfp": ("autokfp",),
}
_IMPORT = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")
_TASK = re.compile(r"(?:Executing task '([\w-]+)'|Task '([\w-]+)' finished)")
_STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) - INFO - ")
# an engine's summary line: "AutoKeras leader ... seconds {'import': 17.89, 'search': ...}"
_ENGINE_LINE = re.compile(r"(AutoKeras|H2O) leader .*?seconds \{([^}]*)\}")
_IMPORT_SECONDS = re.compile(r"'import': ([0-9.]+)")


def group_of(module: str) -> str:
    root = module.split(".")[0]
    for group, roots in GROUPS.items():
        if root in roots:
            return group
    return "other"


def parse_log(text: str) -> dict[str, dict[str, float]]:
    """Per task (and ``before`` for the command's own lines before the first task): its wall
    seconds and its import seconds per group, from a run log written with
    ``PYTHONPROFILEIMPORTTIME=1``."""
    from datetime import datetime

    tasks: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    started: dict[str, datetime] = {}
    current = "before"
    for raw in text.splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", raw)
        found = _IMPORT.search(line)
        if found:
            # each module's own time goes to its package's group; the total is the top-level
            # imports' cumulative times (each module counted once)
            tasks[current][group_of(found.group(4))] += int(found.group(1)) / 1e6
            if not found.group(3):
                tasks[current]["imports"] += int(found.group(2)) / 1e6
            continue
        stamp, task = _STAMP.match(line), _TASK.search(line)
        if not (stamp and task):
            continue
        moment = datetime.strptime(stamp.group(1), "%H:%M:%S.%f")
        if task.group(1):
            name = task.group(1)
            if name == "train-model":
                name = f"train-model-{sum(1 for key in started if key.startswith(name)) + 1}"
            started[name] = moment
            current = name
        else:
            name = next(key for key in reversed(list(started)) if key.startswith(task.group(2)))
            tasks[name]["wall"] = round((moment - started[name]).total_seconds() % 86400, 2)
            current = "between"
    return {name: dict(values) for name, values in tasks.items()}


def engine_imports(text: str) -> dict[str, float]:
    """The seconds each engine's own clock spent importing its library (AutoKeras's child
    imports TensorFlow inside it unless the worker did it first), from its summary line in
    the run log: they are in the anchor (the engines' own seconds), yet they are no search."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _ENGINE_LINE.search(line)
        seconds = _IMPORT_SECONDS.search(match.group(2)) if match else None
        if match and seconds:
            found[match.group(1).lower()] = float(seconds.group(1))
    return found


# the refit's cluster start: its own JVM's, or its wait for the run's warm refit cluster
# (training/h2o_refit_cluster.py)
_CLUSTER_START = re.compile(r"local H2O cluster \S+ started in ([0-9.]+)s|"
                            r"warm H2O cluster \S+: waited ([0-9.]+)s")


def refit_fit_seconds(text: str, home: Path) -> float | None:
    """The refit step's H2O fits, as engine work (its cluster's start left out): the fit
    on the training rows (``holdout_refit_seconds``, which holds the cluster's start, taken
    out from its log line) plus, when it serves, the all-rows fit (its ``engine.json``
    ``train_seconds``). AutoKeras's anchor holds its own refit on every training row; the
    refit step's H2O fits are the same kind of work. None when the champion is no H2O
    model or the refit did not run."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    block = plain.split("Executing task 'refit-model'", 1)[-1]
    block = block.split("Task 'refit-model' finished", 1)[0]
    starts = [float(own or waited) for own, waited in _CLUSTER_START.findall(block)]
    served = sorted(home.rglob("refit-model/served_model/artifacts/meta.json"))
    outputs = sorted(home.rglob("refit-model/executor_output.json"))
    if not (served and outputs and starts):
        return None
    meta = json.loads(served[-1].read_text())
    metrics = json.loads(outputs[-1].read_text())["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    if meta.get("engine") != "h2o" or "holdout_refit_seconds" not in metrics:
        return None
    seconds = float(metrics["holdout_refit_seconds"]) - sum(starts)
    if (meta.get("serving") or {}).get("model") == "refit":  # else the gated model serves:
        # the all-rows fit was not run (the one on the training rows was rejected)
        engine = json.loads(served[-1].with_name("engine").joinpath("engine.json").read_text())
        seconds += float(engine["train_seconds"])
    return round(seconds, 1)


def print_share_with_refit(wall: float | None, engines: dict[str, float],
                           refit: float | None) -> None:
    """The share outside the engines with the refit step's H2O fits counted as engine work
    (``refit_fit_seconds``): printed beside the anchor's, never instead of it."""
    if wall and refit:
        outside = wall - sum(engines.values()) - refit
        print(f"the refit step's H2O fits (cluster start left out): {refit:.1f} s; counted as "
              f"engine work, outside the engines: {outside:.1f} s ({outside / wall:.0%})")


def print_share_without_imports(wall: float | None, engines: dict[str, float],
                                imports: dict[str, float] | None) -> None:
    """The share outside the engines with their own imports counted outside: comparable
    whether the engine's child or the worker imported the library."""
    if not imports:
        return
    inside = sum(engines.values()) - sum(imports.values())
    line = ("engines' own imports (in the anchor): " +
            ", ".join(f"{engine} {seconds:.1f}" for engine, seconds in imports.items()))
    if wall:
        line += (f"; counted outside the engines: {wall - inside:.1f} s "
                 f"({(wall - inside) / wall:.0%})")
    print(line)


def interpreter_start(python: str, repeat: int = 5) -> float:
    """The median wall seconds of ``python -c pass``: a process's start without imports."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def print_table(tasks: dict[str, dict[str, float]], engines: dict[str, float], wall: float | None,
                start: float, engine_import_seconds: dict[str, float] | None = None,
                refit: float | None = None) -> None:
    columns = [*GROUPS, "other"]
    print("| task | wall s | imports s | " + " | ".join(columns) + " | rest s |")
    print("|---" * (len(columns) + 4) + "|")
    total_wall = total_imports = 0.0
    for name, values in tasks.items():
        if "wall" not in values:
            continue
        imports = values.get("imports", 0.0)
        total_wall += values["wall"]
        total_imports += imports
        print(f"| {name} | {values['wall']:.1f} | {imports:.1f} | " +
              " | ".join(f"{values.get(c, 0.0):.1f}" for c in columns) +
              f" | {values['wall'] - imports:.1f} |")
    inside = sum(engines.values())
    print(f"| **tasks** | {total_wall:.1f} | {total_imports:.1f} | " + " | ".join(
        f"{sum(v.get(c, 0.0) for k, v in tasks.items() if 'wall' in v):.1f}" for c in columns) +
        f" | {total_wall - total_imports:.1f} |")
    print()
    print(f"interpreter start (python -c pass, median of 5): {start:.3f} s per process")
    print("engines' own seconds (anchor): " +
          ", ".join(f"{engine} {seconds:.1f}" for engine, seconds in engines.items()) +
          f" = {inside:.1f}")
    tasks_outside = total_wall - inside
    print(f"tasks outside the engines: {tasks_outside:.1f} s, of which imports "
          f"{total_imports:.1f} s ({total_imports / tasks_outside:.0%})" if tasks_outside > 0 else "")
    if wall:
        print(f"whole run: {wall:.1f} s wall, outside the engines {wall - inside:.1f} s "
              f"({(wall - inside) / wall:.0%}); outside the tasks (command start, kfp.local "
              f"between tasks, end) {wall - total_wall:.1f} s")
    print_share_without_imports(wall, engines, engine_import_seconds)
    print_share_with_refit(wall, engines, refit)
    print("load average (1/5/15 min): " + "/".join(f"{v:.1f}" for v in os.getloadavg()))


def run_once(args: argparse.Namespace, folder: Path, tag: str,
             fork: bool | None = None) -> tuple[dict[str, Any], dict[str, dict[str, float]] | None,
                                               dict[str, float]]:
    """One ``autokfp run`` of the table under the import profiler: (its result, its tasks
    parsed from the run log or None without a log, the engines' own seconds). ``fork`` sets
    ``AUTOKFP_LOCAL_FORK`` (False: a new interpreter per task; None: as the environment has
    it)."""
    import benchmark_suite as suite

    saved = {name: os.environ.get(name) for name in ("PYTHONPROFILEIMPORTTIME", SWITCH_ENV)}
    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"
    if fork is not None:
        os.environ[SWITCH_ENV] = "1" if fork else "0"
    try:
        result = suite.run_system("autokfp", args.table, folder, args.budget, tag,
                                  args.peer_python, args.autokfp)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    result["load_end"] = [round(v, 1) for v in os.getloadavg()]
    print(f"{args.table} ({tag}): {result.get('status')} in {result.get('wall_seconds')} s "
          f"{result.get('reason', '')[:300]}")
    home = folder / f"autokfp-{tag}" / "home"
    logs = sorted((home / "logs").glob("run-*.log"))
    if not logs:
        print(f"no run log found under {home / 'logs'}", file=sys.stderr)
        return result, None, {}
    text = logs[-1].read_text(errors="replace")
    tasks = parse_log(text)
    result["engine_imports"] = engine_imports(text)
    result["refit_fit_seconds"] = refit_fit_seconds(text, home)
    (folder / f"autokfp-{tag}-startup.json").write_text(json.dumps(tasks, indent=1))
    return result, tasks, suite.engine_seconds(home)


def print_comparison(runs: dict[str, tuple[dict[str, Any], dict[str, dict[str, float]],
                                          dict[str, float]]]) -> None:
    """Per task, each run's wall and import seconds side by side, and the whole runs': the
    first run is the anchor the others' differences are taken from."""
    names = list(runs)
    anchor = names[0]
    order: list[str] = []
    for _, tasks, _ in runs.values():
        order += [name for name, values in tasks.items() if "wall" in values and name not in order]
    head = " | ".join(f"{n} wall s | {n} imports s" for n in names)
    diffs = " | ".join(f"{n} − {anchor} wall s" for n in names[1:])
    print(f"| task | {head} | {diffs} |")
    print("|---" * (1 + 2 * len(names) + len(names) - 1) + "|")

    def cell(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    def figures(name: str, task: str) -> tuple[float | None, float | None]:
        values = runs[name][1].get(task, {})
        return (values.get("wall"), values.get("imports", 0.0) if "wall" in values else None)

    for task in order:
        walls = {n: figures(n, task) for n in names}
        base = walls[anchor][0]
        print(f"| {task} | " + " | ".join(f"{cell(w)} | {cell(i)}" for w, i in walls.values()) +
              " | " + " | ".join(
                  "–" if walls[n][0] is None or base is None else f"{walls[n][0] - base:+.1f}"
                  for n in names[1:]) + " |")
    totals = {n: (sum(v["wall"] for v in runs[n][1].values() if "wall" in v),
                  sum(v.get("imports", 0.0) for v in runs[n][1].values() if "wall" in v))
              for n in names}
    print("| **tasks** | " + " | ".join(f"{w:.1f} | {i:.1f}" for w, i in totals.values()) +
          " | " + " | ".join(f"{totals[n][0] - totals[anchor][0]:+.1f}" for n in names[1:]) + " |")
    print()
    for name, (result, _, engines) in runs.items():
        wall = result.get("wall_seconds")
        inside = sum(engines.values())
        share = f", outside the engines {(wall - inside) / wall:.0%}" if wall else ""
        print(f"{name}: whole run {cell(wall)} s wall, engines' own {inside:.1f} s "
              f"(anchor: " + ", ".join(f"{e} {s:.1f}" for e, s in engines.items()) +
              f"){share}, champion {result.get('champion_engine', '?')}, load at its end "
              + "/".join(str(v) for v in result.get("load_end", [])))
        print_share_without_imports(wall, engines, result.get("engine_imports"))
        print_share_with_refit(wall, engines, result.get("refit_fit_seconds"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default="wine")
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="benchmark_suite's folder (the table's split is made there once)")
    parser.add_argument("--tag", default="startup")
    parser.add_argument("--log", type=Path, help="only read this run log (written with "
                        "PYTHONPROFILEIMPORTTIME=1)")
    parser.add_argument("--compare", action="store_true",
                        help=f"run twice, {SWITCH_ENV}=0 (a new interpreter per task) then =1 "
                             "(tasks forked from the warm worker), and print them side by side")
    parser.add_argument("--autokfp", default=str(Path(sys.executable).parent / "autokfp"))
    parser.add_argument("--peer-python", default="/work/bench-venv/bin/python",
                        help="reads tables whose package autokfp lacks (as benchmark_suite)")
    args = parser.parse_args(argv)
    import benchmark_suite as suite

    start = interpreter_start(sys.executable)
    if args.log:
        home = args.log.parent.parent
        text = args.log.read_text(errors="replace")
        print_table(parse_log(text), suite.engine_seconds(home), None, start, engine_imports(text),
                    refit_fit_seconds(text, home))
        return 0
    out = args.out.resolve()
    folder = out / args.table
    if not (folder / "task.json").exists():
        folder = suite.prepare(args.table, out, args.peer_python)
    if args.compare:
        runs = {}
        for label, fork in (("no worker", False), ("worker", True)):
            result, tasks, engines = run_once(args, folder, f"{args.tag}-{'fork' if fork else 'nofork'}",
                                              fork)
            if tasks is None:
                return 1
            runs[label] = (result, tasks, engines)
        print(f"interpreter start (python -c pass, median of 5): {start:.3f} s per process")
        print_comparison(runs)
        return 0 if all(r[0].get("status") == "trained" for r in runs.values()) else 1
    result, found, engines = run_once(args, folder, args.tag)
    if found is None:
        return 1
    print_table(found, engines, result.get("wall_seconds"), start, result.get("engine_imports"),
                result.get("refit_fit_seconds"))
    return 0 if result.get("status") == "trained" else 1


if __name__ == "__main__":
    sys.exit(main())
