"""How the training pipeline's steps scale with rows: time and peak memory per step.

For each ``--rows`` size a table of 30 columns (18 numbers, 7 categories as text, 2
booleans, a sensitive ``gender``, an id, a binary target) is written as Parquet in 1M-row
pieces (never whole in memory). Then the pipeline's steps run on it in order, each through
its real step function (``autokfp.steps``) in a fresh Python process, and the script prints
each step's wall time and peak resident memory (the step's process and its children, so
the H2O JVM the train step starts counts: the larger of the process's VmHWM and the
process tree's resident memory sampled every 0.2 s):

    discover          the crawl of the folder, then the training table copied in Arrow
                      batches as the pipeline's dataset (the discover step)
    profile           the quality gate in Arrow batches (+ Evidently's bounded data summary)
    engineer          split streamed in batches, task, feature plan on a sample
                      (engineer_features)
    data bias         group representation of the training rows (check_data_bias)
    train             the feature plan applied in Arrow batches into a Parquet file that
                      the H2O JVM imports (--budget seconds of AutoML, --algos, heap
                      --h2o-mem); only the target column is held whole (train_model)
    evaluate          the model on the test rows only, scored batch by batch; only the
                      target column is held whole (evaluate_model)
    bias              fairness on the test rows scored batch by batch (their target and
                      sensitive columns held), the mitigation fitted on a bounded sample of
                      training rows (bias_check)
    explain           permutation importance on governance.explain_rows test rows and Kernel
                      SHAP (a 20-row training background, the first governance.shap_rows
                      test rows), the rows drawn from the files (explain_model)
    register          the bias step's package registered in MLflow (a SQLite store in the
                      work folder), champion if it wins the comparison (register_model)
    model_card        the model card and compliance report of that version (write_model_card)
    deploy            the champion started as a local predictor process (counted while the
                      step runs) and verified on the first deploy.smoke_rows test rows
                      (deploy_model); the script stops the predictor after the step
    drift             training rows against test rows, streamed from Parquet

    python scripts/benchmark_scale.py                      # 100k and 1M rows
    python scripts/benchmark_scale.py --rows 10000000 --algos GBM --budget 60 --h2o-mem 6G

The training table can also be a JSON-lines file of the folder (``--source jsonl``), a
PostgreSQL table (``--source sql``, on ``--sql-url`` or a temporary server started from
Debian's packages as the tests start it) or a Parquet object of an s3 source (``--source
s3``, on a moto_server started as the tests start it). ``--only discover load_whole`` then measures the
discover step, which copies them in chunks, beside ``load_whole``: the anchor, the same
dataset read whole by ``load_dataset`` and written as the step did before.

The machine's load average and the CPU seconds of the step's processes (the JVM included)
are printed with every step: on a shared machine the wall times are upper bounds, and the
CPU seconds are what to compare across sizes.

Anchors, measured in the same run on the same files, each in its own fresh process, are
printed under the step they anchor (``--no-anchors`` leaves them out); a step without a
whole-table path left in the code has none:

    load_whole        discover's: the training table read whole by ``load_dataset`` (pandas)
                      and written as the step did before it streamed
    evaluate_before   evaluate's: the same step with the bootstrap as it was (each sample's
                      rows drawn out and the metric, an AUC, ranked again) and pool_rows'
                      position lookup as f85c0e2 made it (the positions sorted per lookup)
    explain_whole     explain's: both files read whole into pandas and the rows drawn from
                      the frames (the step before it drew from the files); the script checks
                      the explanation equals the step's
    drift_whole       drift's: both files read whole into pandas and ``detect_drift`` on the
                      frames; the script checks the verdicts equal the streamed ones

``--cut-split`` writes ``train.parquet`` and ``test.parquet`` as the first 80% and the last
20% of the table's rows (row groups of 209,715 and 52,429 rows, as engineer writes them)
when engineer has not run, for the steps after train when engineer does not fit the time
(its split is by row at random, this one contiguous: the steps read the same columns and
row counts). ``--model DIR`` takes the trained package (the train step's ``model`` folder of an earlier
run, the same 30 columns) instead of training: the steps after train then run at a size
whose train step was not run (train's own figures at 10M rows are in docs/scale.md).

Discovery (the crawl) is measured by scripts/benchmark_discovery.py instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PIECE_ROWS = 1_000_000
STEPS = ("discover", "profile", "engineer", "data_bias", "train", "evaluate", "bias", "explain",
         "register", "model_card", "deploy", "drift")
# each anchor runs right after the step it anchors (docstring); load_whole also alone with
# --only (the anchor for --source jsonl / sql)
ANCHOR_OF = {"discover": "load_whole", "evaluate": "evaluate_before", "explain": "explain_whole",
             "drift": "drift_whole"}
ANCHORS = tuple(ANCHOR_OF.values())
SQL_TABLE = "customers"
MEMORY_TARGET_GB = 12.0


# ----------------------------------------------------------------------------- the data


def make_piece(rows: int, seed: int, start_id: int) -> Any:
    """One piece of the table: 30 columns, a learnable binary target."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {"customer_id": np.arange(start_id, start_id + rows)}
    logit = np.zeros(rows)
    for i in range(18):
        values = rng.normal(0.0, 1.0, rows) if i % 3 else rng.lognormal(2.0, 0.6, rows)
        if i % 5 == 2:
            values[rng.random(rows) < 0.03] = np.nan
        data[f"num_{i:02d}"] = values
        if i < 6:
            logit += (0.6 - 0.1 * i) * np.nan_to_num((values - values.mean()) / values.std())
    for i in range(7):
        levels = np.array([f"c{i}_{k}" for k in range(3 + 2 * i)], dtype=object)
        codes = rng.integers(0, len(levels), rows)
        data[f"cat_{i}"] = levels[codes]
        if i < 3:
            logit += 0.3 * (codes == 0)
    for i in range(2):
        data[f"flag_{i}"] = rng.random(rows) < 0.3 + 0.2 * i
    data["gender"] = np.where(rng.random(rows) < 0.5, "female", "male").astype(object)
    data["churned"] = (logit + rng.logistic(size=rows) > 0.8).astype(int)
    return pd.DataFrame(data)


def write_table(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return
    writer = None
    try:
        for piece, start in enumerate(range(0, rows, PIECE_ROWS)):
            frame = make_piece(min(PIECE_ROWS, rows - start), seed=piece, start_id=start)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(str(path) + ".part", table.schema)
            writer.write_table(table, row_group_size=256_000)
    finally:
        if writer is not None:
            writer.close()
    Path(str(path) + ".part").rename(path)


def cut_split(table: Path, work: Path) -> None:
    """train.parquet / test.parquet: the first 80% and the last 20% of the table's rows,
    copied in batches (``--cut-split``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(table)
    rows = handle.metadata.num_rows
    cut = int(rows * 0.8)
    writers = {name: pq.ParquetWriter(str(work / f"{name}.parquet.part"), handle.schema_arrow)
               for name in ("train", "test")}
    pending: list[Any] = []  # train batches until a row group of 4 x 52,429 rows
    start = 0
    try:
        for batch in handle.iter_batches(batch_size=52_429):
            end = start + batch.num_rows
            if start < cut:
                pending.append(batch.slice(0, min(cut, end) - start))
                if len(pending) == 4 or end >= cut:
                    writers["train"].write_table(pa.Table.from_batches(pending),
                                                 row_group_size=209_716)
                    pending = []
            if end > cut:
                writers["test"].write_batch(batch.slice(max(cut - start, 0)))
            start = end
    finally:
        for writer in writers.values():
            writer.close()
    for name in writers:
        Path(work / f"{name}.parquet.part").rename(work / f"{name}.parquet")


# ----------------------------------------------------------------------------- the steps


def write_jsonl(parquet: Path, path: Path) -> None:
    """The table as JSON lines, written a row group at a time."""
    import pyarrow.parquet as pq

    if path.exists():
        return
    part = Path(str(path) + ".part")
    handle = pq.ParquetFile(parquet)
    with open(part, "w", encoding="utf-8") as out:
        for group in range(handle.num_row_groups):
            frame = handle.read_row_group(group).to_pandas()
            out.write(frame.to_json(orient="records", lines=True))
            out.write("\n")
    part.rename(path)


def write_sql(parquet: Path, url: str, rows: int) -> str:
    """The table in PostgreSQL (``COPY`` a row group at a time); its name."""
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    name = f"{SQL_TABLE}_{rows}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            if sa.inspect(connection).has_table(name):
                return name
        handle = pq.ParquetFile(parquet)
        first = handle.read_row_group(0).to_pandas().head(0)
        first.to_sql(name + "_part", engine, index=False, if_exists="replace")
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for group in range(handle.num_row_groups):
                frame = handle.read_row_group(group).to_pandas()
                text = frame.to_csv(index=False, header=False)
                _copy_csv(cursor, f'COPY "{name}_part" FROM STDIN WITH (FORMAT csv)', text)
            cursor.execute(f'ALTER TABLE "{name}_part" RENAME TO "{name}"')
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()
    return name


def upload(path: Path, uri: str) -> None:
    """The file as an S3 object (boto3's multipart upload, streamed from disk)."""
    import boto3

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL")).upload_file(
        str(path), bucket, key)


def _copy_csv(cursor: Any, statement: str, text: str) -> None:
    import io

    if hasattr(cursor, "copy_expert"):  # psycopg2
        cursor.copy_expert(statement, io.StringIO(text))
    else:  # pg8000
        cursor.execute(statement, stream=io.BytesIO(text.encode()))


def _config(folder: Path, budget: int, h2o_mem: str,
            algos: tuple[str, ...] = ("GLM", "GBM"), dataset: str = "files/table.parquet",
            sql_url: str | None = None, max_models: int = 2,
            bucket_uri: str | None = None) -> dict[str, Any]:
    sources: list[dict[str, Any]] = [{"name": "files", "kind": "folder", "path": str(folder)}]
    if bucket_uri:  # the object under an s3 prefix
        sources = [{"name": "files", "kind": "s3", "uri": bucket_uri}]
    if sql_url:  # the table alone
        sources = [{"name": "db", "kind": "sql", "url": sql_url,
                    "tables": [dataset.split("/", 1)[1]]}]
    return {
        "name": "scale-bench",
        "sources": sources,
        "training": {"dataset": dataset, "target": "churned",
                     "id_column": "customer_id"},
        "budget": {"max_runtime_secs": budget, "nthreads": 2},
        "engines": {"h2o": {"max_models": max_models, "nfolds": 2, "max_mem_size": h2o_mem,
                            "include_algos": list(algos)}},
        "governance": {"sensitive_columns": ["gender"]},
        "selection": {"bootstrap_samples": 100},
        # the local predictor on a loaded shared machine: its single-row latency, not what
        # the benchmark measures, must not fail the rollout
        "deploy": {"latency_budget_ms": 10_000, "ready_timeout_secs": 600},
    }


def run_step(step: str, work: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Inside a fresh process: one step on the files of ``work``."""
    paths = {name: str(work / name) for name in (
        "dataset.parquet", "schema.json", "train.parquet", "test.parquet", "plan.json", "model",
        "evaluation.json", "model-fair", "registration.json", "explanation.json", "bias.json")}
    # what the pipeline registers, explains and deploys: the bias step's package
    package = paths["model-fair"] if Path(paths["model-fair"]).exists() else paths["model"]
    table = paths["dataset.parquet"]
    if step == "discover":
        from autokfp.steps.discover import discover

        discover(config, table, paths["schema.json"], str(work / "catalog.json"))
    elif step == "load_whole":  # the anchor: how discover read a JSON-lines file or table
        from autokfp.catalog.discovery import load_dataset
        from autokfp.config import parse_config
        from autokfp.steps.io import write_parquet

        frame, _ = load_dataset(parse_config(config))
        write_parquet(str(work / "whole.parquet"), frame)
    elif step == "profile":
        from autokfp.steps.profile import profile

        profile(config, str(table), paths["schema.json"], str(work / "quality.html"),
                str(work / "quality.json"), str(work / "summary.html"))
    elif step == "engineer":
        from autokfp.steps.engineer_features import engineer_features

        engineer_features(config, str(table), paths["schema.json"], paths["train.parquet"],
                          paths["test.parquet"], paths["plan.json"])
    elif step == "data_bias":
        from autokfp.steps.check_data_bias import check_data_bias

        check_data_bias(config, paths["train.parquet"], paths["plan.json"], paths["schema.json"],
                        str(work / "data_bias.md"), str(work / "data_bias.json"))
    elif step == "train":
        from autokfp.steps.train_model import train_model

        train_model(config, paths["train.parquet"], paths["plan.json"], paths["model"])
    elif step in ("evaluate", "evaluate_before"):
        from autokfp.steps.evaluate_model import evaluate_model

        if step == "evaluate_before":
            _code_before_linear_bootstrap()
        evaluate_model(config, paths["model"], paths["test.parquet"],
                       paths["evaluation.json"] if step == "evaluate"
                       else str(work / "evaluate_before.json"))
    elif step == "bias":
        from autokfp.steps.bias_check import bias_check

        bias_check(config, paths["model"], paths["train.parquet"], paths["test.parquet"],
                   paths["schema.json"], str(work / "model-fair"), str(work / "bias.md"),
                   str(work / "bias.json"))
    elif step == "explain":
        from autokfp.steps.explain_model import explain_model

        explain_model(config, package, paths["train.parquet"], paths["test.parquet"],
                      paths["explanation.json"], str(work / "explanation.html"),
                      str(work / "plots"))
    elif step == "explain_whole":  # the anchor: both files whole, the rows drawn from frames
        import pandas as pd

        from autokfp.config import parse_config
        from autokfp.governance import explain
        from autokfp.steps.io import read_package

        cfg = parse_config(config)
        model, plan, meta = read_package(package)
        result = explain.explain_model(model, plan, meta, pd.read_parquet(paths["train.parquet"]),
                                       pd.read_parquet(paths["test.parquet"]),
                                       work / "plots-whole", rows=cfg.governance.explain_rows,
                                       shap_rows=cfg.governance.shap_rows, seed=cfg.split.seed)
        result["model"] = cfg.model_name
        same = json.loads(json.dumps(result)) == json.loads(
            Path(paths["explanation.json"]).read_text())
    elif step == "register":
        from autokfp.steps.register_model import register_model

        register_model(config, package, paths["evaluation.json"], paths["schema.json"],
                       paths["registration.json"])
    elif step == "model_card":
        from autokfp.steps.write_model_card import write_model_card

        write_model_card(config, package, paths["registration.json"], paths["evaluation.json"],
                         paths["schema.json"], paths["bias.json"], paths["explanation.json"],
                         str(work / "model_card.md"), str(work / "compliance.md"),
                         str(work / "compliance.json"))
    elif step == "deploy":
        from autokfp.steps.deploy_model import deploy_model

        try:
            deployed = deploy_model(config, paths["registration.json"], paths["test.parquet"],
                                    str(work / "isvc.yaml"), str(work / "decision.json"))
        finally:
            _stop_local_predictors(work / "home" / "serving")
    elif step in ("drift", "drift_whole"):
        plan = json.loads(Path(paths["plan.json"]).read_text())
        kinds = {c: "numerical" for c in plan["numeric"]}
        kinds.update({c: "categorical" for c in plan["categorical"] + plan["boolean"]})
        if step == "drift":
            from autokfp.monitoring.drift_stream import detect_drift_parquet

            report = detect_drift_parquet(paths["train.parquet"], paths["test.parquet"],
                                          columns=list(kinds), kinds=kinds)
        else:  # the anchor: both sides whole in pandas
            import pandas as pd

            from autokfp.monitoring.drift import detect_drift

            report = detect_drift(pd.read_parquet(paths["train.parquet"], columns=list(kinds)),
                                  pd.read_parquet(paths["test.parquet"], columns=list(kinds)),
                                  columns=list(kinds), kinds=kinds)
        verdicts = {c.column: c.drifted for c in report.columns}
    out: dict[str, Any] = {"own_peak_gb": _peak_kb() / 1024**2}
    if step in ("drift", "drift_whole"):
        out["verdicts"] = verdicts
    if step == "train":
        out["phases"] = _train_phases(Path(paths["model"]))
    if step == "explain_whole":
        out["phases"] = f"explanation {'equal to' if same else 'DIFFERS from'} the step's"
    if step == "deploy":
        out["phases"] = f"{deployed.outcome}: {deployed.reason}"
    return out


def _stop_local_predictors(state: Path) -> None:
    """Stop the predictor processes the deploy step started (children of this step process,
    their pids in the local target's state files), so that none outlives the run."""
    import signal

    for path in sorted(state.glob("*.json")) if state.is_dir() else []:
        try:
            pid = int(json.loads(path.read_text())["pid"])
        except (ValueError, KeyError, TypeError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(150):  # 15 s, then killed
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        path.unlink(missing_ok=True)


def _code_before_linear_bootstrap() -> None:
    """evaluate_before: put back the bootstrap loop and the position lookup evaluate ran
    before (copies of that code; the step is otherwise the same)."""
    import numpy as np

    from autokfp.modeling import bootstrap, estimate, validation
    from autokfp.modeling.evaluation import metric_value

    def bootstrap_values(metric: str, truth: Any, score_sets: Any, task: str, samples: int,
                         seed: int, skip_errors: bool = False) -> list[tuple[float, ...]]:
        truth = np.asarray(truth)
        rng = np.random.default_rng(seed)
        out: list[tuple[float, ...]] = []
        n = len(truth)
        for _ in range(samples):
            idx = rng.integers(0, n, n)
            if task != "regression" and len(np.unique(truth[idx])) < 2:
                continue
            try:
                out.append(tuple(metric_value(metric, truth[idx], s[idx], task)
                                 for s in score_sets))
            except ValueError:
                if not skip_errors:
                    raise
        return out

    class Lookup:  # f85c0e2: np.unique, and an argsort of the positions per lookup
        def __init__(self, positions: Any) -> None:
            self.positions = positions
            self.distinct = np.unique(positions)

        def places(self, rows: Any) -> Any:
            order = np.argsort(self.positions, kind="stable")
            return order[np.searchsorted(self.positions, rows, side="right",
                                         sorter=order) - 1]

    bootstrap.bootstrap_values = bootstrap_values  # type: ignore[assignment]
    validation.bootstrap_values = bootstrap_values  # type: ignore[assignment]
    estimate._Lookup = Lookup  # type: ignore[assignment,misc]


def _train_phases(model: Path) -> str:
    """What the H2O train step spent its time on (engine.json) and the leader's size."""
    import zipfile

    engine = model / "artifacts" / "engine"
    try:
        facts = json.loads((engine / "engine.json").read_text())
        with zipfile.ZipFile(engine / "model.zip") as mojo:
            ini = mojo.read("model.ini").decode()
    except (OSError, KeyError, ValueError):
        return ""
    trees = next((line.split("=")[1].strip() for line in ini.splitlines()
                  if line.startswith("n_trees ")), "?")
    seconds = facts.get("seconds", {})
    shown = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
    return f"{facts.get('leader')} ({trees} trees); {shown}"


def _peak_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(step: str, work: Path, config: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "AUTOKFP_HOME": str(work / "home"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'home' / 'mlflow.db'}"}
    (work / "home").mkdir(exist_ok=True)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, __file__, "--step", step, "--work", str(work),
             "--config", json.dumps(config)],
            stdout=out, stderr=err, text=True, env=env, cwd=ROOT)
        tree_peak, cpu_seconds = _watch_tree(process)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        return {"step": step, "seconds": seconds, "error": stderr.strip().splitlines()[-1:],
                "load": load, "cpu_seconds": cpu_seconds}
    result = json.loads(stdout.strip().splitlines()[-1])
    peak = max(result["own_peak_gb"], tree_peak / 1024**3)
    return {"step": step, "seconds": seconds, "load": load, "peak_gb": peak,
            "cpu_seconds": cpu_seconds, **result}


def _watch_tree(process: subprocess.Popen) -> tuple[int, float]:
    """Wait for ``process``; the largest resident memory (bytes) of it and its descendants
    (the H2O JVM) seen while it ran, and their CPU seconds (user + system, each process's
    last reading: on a loaded machine the CPU time is what grows with the work, the wall
    time grows with the neighbours too)."""
    import psutil

    peak = 0
    cpu: dict[int, float] = {}
    root = psutil.Process(process.pid)
    while process.poll() is None:
        total = 0
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            members = []
        for member in members:
            try:
                total += member.memory_info().rss
                times = member.cpu_times()
                cpu[member.pid] = times.user + times.system
            except psutil.Error:
                pass
        peak = max(peak, total)
        time.sleep(0.2)
    return peak, sum(cpu.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--skip", nargs="*", default=[], choices=STEPS)
    parser.add_argument("--budget", type=int, default=30, help="H2O training seconds")
    parser.add_argument("--h2o-mem", default="3G", help="H2O JVM heap (engines.h2o.max_mem_size)")
    parser.add_argument("--algos", nargs="+", default=["GLM", "GBM"],
                        help="engines.h2o.include_algos (GBM alone keeps training within the "
                             "budget: a GLM that does not finish in it is retried without one)")
    parser.add_argument("--max-models", type=int, default=2,
                        help="engines.h2o.max_models: with a --budget that never runs out, "
                             "the models (not the clock) end AutoML, so train's work is fixed "
                             "and its time can grow with the rows")
    parser.add_argument("--model", help="a trained package (the train step's model folder of "
                                        "an earlier run, same columns) used instead of training")
    parser.add_argument("--cut-split", action="store_true",
                        help="train/test files cut from the table (80/20) when engineer has "
                             "not run (docstring)")
    parser.add_argument("--work-dir", help="where the tables and step outputs go (kept)")
    parser.add_argument("--source", choices=("parquet", "jsonl", "sql", "s3"),
                        default="parquet",
                        help="the training table as a Parquet or JSON-lines file of a folder, "
                             "a PostgreSQL table, or a Parquet object of an s3 source "
                             "(moto_server, as the tests start it)")
    parser.add_argument("--sql-url", help="PostgreSQL URL for --source sql (default: a "
                                          "temporary server, as the tests start one)")
    parser.add_argument("--only", nargs="+", choices=STEPS + ANCHORS,
                        help="run only these steps (load_whole: the anchor for jsonl/sql)")
    parser.add_argument("--no-anchors", action="store_true",
                        help="leave out the anchors (load_whole, evaluate_before, drift_whole)")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        # what libraries the step loads may parse sys.argv (KServe's model server, which the
        # local deploy target starts, reads "--work" as its "--workers")
        sys.argv = sys.argv[:1]
        print(json.dumps(run_step(args.step, Path(args.work), json.loads(args.config))))
        return 0

    base = Path(args.work_dir or tempfile.mkdtemp(prefix="autokfp-scale-"))
    print(f"Scale benchmark: {', '.join(f'{r:,}' for r in args.rows)} rows x 30 columns "
          f"({args.source}); {os.cpu_count()} cores; work in {base}")
    server = None
    if args.source == "s3":  # moto_server, started as the tests start it
        sys.path.insert(0, str(ROOT))
        from tests.conftest import s3_server

        class _Folders:
            def mktemp(self, name: str) -> Path:
                path = base / name
                path.mkdir(parents=True, exist_ok=True)
                return path

        server = s3_server.__wrapped__(_Folders())
        args.bucket_uri = next(server).base_uri + "/scale"
    if args.source == "sql" and not args.sql_url:
        sys.path.insert(0, str(ROOT))
        from tests.conftest import postgres_server

        server = postgres_server.__wrapped__()
        pg = next(server)
        pg.run("postgres", "CREATE DATABASE scale")
        os.environ["AUTOKFP_BENCH_PG_PASSWORD"] = pg.password
        args.sql_url = pg.url("scale", "${AUTOKFP_BENCH_PG_PASSWORD}")
    try:
        return _run(args, base)
    finally:
        if server is not None:
            next(server, None)


def _run(args: argparse.Namespace, base: Path) -> int:
    from autokfp.config import expand_env

    steps: list[str] = []
    # anchors named in --only: those alone (each right after its step, if that runs)
    named = [a for a in ANCHORS if args.only and a in args.only]
    for step in STEPS:
        if (step in args.only if args.only else True) and step not in args.skip:
            steps.append(step)
            anchor = ANCHOR_OF.get(step)
            if anchor and not args.no_anchors and args.source == "parquet" and (
                    anchor in named or not named):
                steps.append(anchor)  # the anchor right after its step
    steps += [a for a in named if a not in steps]
    results: dict[int, list[dict[str, Any]]] = {}
    for rows in args.rows:
        work = base / f"rows-{rows}"
        (work / "data").mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_table(work / "data" / "table.parquet", rows)
        size_mb = (work / "data" / "table.parquet").stat().st_size / 1e6
        dataset = "files/table.parquet"
        if args.source == "jsonl":
            (work / "json").mkdir(exist_ok=True)
            write_jsonl(work / "data" / "table.parquet", work / "json" / "table.jsonl")
            size_mb = (work / "json" / "table.jsonl").stat().st_size / 1e6
            dataset = "files/table.jsonl"
        elif args.source == "s3":
            bucket_uri = f"{args.bucket_uri}/rows-{rows}"
            upload(work / "data" / "table.parquet", f"{bucket_uri}/table.parquet")
        elif args.source == "sql":
            name = write_sql(work / "data" / "table.parquet", expand_env(args.sql_url), rows)
            dataset = f"db/{name}"
        kind = {"jsonl": "JSON lines", "sql": "Parquet, copied into PostgreSQL",
                "s3": "Parquet, an object of moto's S3"}.get(
            args.source, "Parquet")
        print(f"\n{rows:,} rows: table {size_mb:,.0f} MB of {kind} "
              f"({time.perf_counter() - started:.0f} s to write or find); H2O {args.algos}, "
              f"budget {args.budget} s, heap {args.h2o_mem}", flush=True)
        print(f"  {'step':<16} {'seconds':>8} {'CPU s':>8} {'peak GB':>8} {'load':>5}"
              "   (anchors, indented: the step's whole-table or earlier code, this run)")
        folder = work / ("json" if args.source == "jsonl" else "data")
        config = _config(folder, args.budget, args.h2o_mem, tuple(args.algos), dataset,
                         args.sql_url if args.source == "sql" else None, args.max_models,
                         bucket_uri if args.source == "s3" else None)
        results[rows] = []
        if args.cut_split and not (work / "test.parquet").exists():
            cut_split(work / "data" / "table.parquet", work)
            print("  (train.parquet and test.parquet cut from the table, 80/20: engineer not "
                  "run)")
        if args.model:
            import shutil

            if not (work / "model").exists():
                shutil.copytree(args.model, work / "model")
            print(f"  (the model: {args.model}, trained earlier; train not run)")
        for step in steps:
            result = measure(step, work, config)
            results[rows].append(result)
            label = f"  {step}" if step in ANCHORS else step
            if "error" in result:
                print(f"  {label:<16} {result['seconds']:>8.1f} {result['cpu_seconds']:>8.1f} "
                      f"{'FAILED':>8} {result['load']:>5.1f}  {' '.join(result['error'])[:150]}")
                continue
            print(f"  {label:<16} {result['seconds']:>8.1f} {result['cpu_seconds']:>8.1f} "
                  f"{result['peak_gb']:>8.2f} {result['load']:>5.1f}", flush=True)
            if result.get("phases"):
                print(f"                   {result['phases']}", flush=True)
            streamed = next((r for r in results[rows] if r["step"] == "drift"), None)
            if step == "drift_whole" and streamed and "verdicts" in streamed:
                same = streamed["verdicts"] == result["verdicts"]
                print(f"                   verdicts {'equal' if same else 'DIFFER from'} the "
                      f"streamed drift's ({sum(result['verdicts'].values())} of "
                      f"{len(result['verdicts'])} columns drifted)", flush=True)
    if len(results) > 1:
        sizes = sorted(results)
        low, high = sizes[0], sizes[-1]
        print(f"\ngrowth from {low:,} to {high:,} rows ({high / low:.0f}x rows):")
        for first, last in zip(results[low], results[high]):
            if "error" in first or "error" in last:
                continue
            print(f"  {first['step']:<16} time x{last['seconds'] / first['seconds']:.1f}, "
                  f"CPU x{last['cpu_seconds'] / max(first['cpu_seconds'], 0.1):.1f}, "
                  f"peak x{last['peak_gb'] / first['peak_gb']:.1f}")
    peaks = [r["peak_gb"] for rs in results.values() for r in rs
             if "peak_gb" in r and r["step"] not in ANCHORS]
    if peaks:
        print(f"\n{'PASS' if max(peaks) < MEMORY_TARGET_GB else 'FAIL'}  every step's peak under "
              f"{MEMORY_TARGET_GB:.0f} GB (largest {max(peaks):.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
