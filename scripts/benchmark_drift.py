"""Benchmark our drift verdicts (autokfp.monitoring.drift) against Evidently's DataDriftPreset.

The data: ``--columns`` columns per side (70% numerical: normal, log-normal, a few with at
most 5 distinct values, some missing values; 30% categorical: pandas ``category`` and plain
string columns), the current side shifted in about a quarter of the columns. Both sides
have ``--rows`` rows (default 1,000,000 x 50).

Each measurement runs in a fresh subprocess, so memory figures do not mix: the data is
generated first, then the peak resident memory is reset (Linux ``/proc/self/clear_refs``)
and read back after the drift computation. "peak" is the whole process (data included),
"data" what the two frames alone take.

Evidently runs on ``--evidently-rows`` rows per side (default 100,000: at 1M x 50 it takes
minutes), and its rows/s is measured there. Its time at ``--rows`` is extrapolated
linearly from that rate, and the output says so; pass ``--evidently-rows`` equal to
``--rows`` to measure it instead. Our verdicts are also measured at Evidently's size, so
the speed-up at equal size is measured, not extrapolated.

Agreement: on the Evidently-sized data (large-sample tests: Wasserstein, Jensen-Shannon)
and on ``--small-rows`` rows (default 800: K-S, chi-square, z-test), the drift verdict of
every column both tested is compared.

    python scripts/benchmark_drift.py                      # 1M x 50, Evidently on 100k
    python scripts/benchmark_drift.py --rows 200000 --evidently-rows 200000

It prints PASS/FAIL for the targets (our time at --rows under 60 s and peak under 4 GB,
at least 5x Evidently's rows/s, every verdict agreeing) and always exits 0.

``--parquet`` measures the streaming path instead (``detect_drift_parquet``: windows larger
than memory): both sides are written as Parquet in 1M-row pieces (never whole in memory),
the verdicts are streamed from the files in a fresh process (time and peak memory, data
not loaded beforehand), and on ``--compare-rows`` rows (default 1M) the streamed verdicts
are compared with ``detect_drift`` on the whole frames. Targets: 10M x 50 per side in at
most 30 s, peak under 2 GB, every verdict the same.

    python scripts/benchmark_drift.py --parquet --rows 10000000 --data-dir /tmp/drift10m
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

TIME_TARGET_S = 60.0
MEMORY_TARGET_GB = 4.0
SPEEDUP_TARGET = 5.0
STREAM_TIME_TARGET_S = 30.0
STREAM_MEMORY_TARGET_GB = 2.0
PIECE_ROWS = 1_000_000


# ----------------------------------------------------------------------------- the data


def make_frames(rows: int, columns: int, seed: int = 0) -> tuple[Any, Any]:
    """Reference and current frames with the same columns; about 1 in 4 columns shifted."""
    import numpy as np
    import pandas as pd

    numerical = round(columns * 0.7)
    reference: dict[str, Any] = {}
    current: dict[str, Any] = {}
    ref_rng, cur_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    for i in range(columns):
        shifted = i % 4 == 1
        if i < numerical:
            style = i % 7
            name = f"num_{i:02d}"
            if style == 4:  # two values -> z-test when small, Jensen-Shannon when large
                reference[name] = (ref_rng.random(rows) < 0.3).astype("float64")
                current[name] = (cur_rng.random(rows) < (0.36 if shifted else 0.3)).astype(
                    "float64"
                )
            elif style == 5:  # few distinct values -> Jensen-Shannon (or chi-square / z when small)
                reference[name] = ref_rng.integers(0, 4, rows).astype("float64")
                current[name] = cur_rng.integers(0, 4, rows).astype("float64")
                if shifted:
                    current[name][cur_rng.random(rows) < 0.15] = 3.0
            elif style == 6:
                reference[name] = ref_rng.lognormal(3.0, 0.8, rows)
                current[name] = cur_rng.lognormal(3.0 + (0.25 if shifted else 0.0), 0.8, rows)
            else:
                reference[name] = ref_rng.normal(50.0, 10.0, rows)
                current[name] = cur_rng.normal(50.0 + (2.5 if shifted else 0.0), 10.0, rows)
                if style == 2:  # missing values
                    reference[name][ref_rng.random(rows) < 0.05] = np.nan
                    current[name][cur_rng.random(rows) < 0.05] = np.nan
        else:
            name = f"cat_{i:02d}"
            levels = [f"level_{k}" for k in range(4 + i % 5)]
            base = np.full(len(levels), 1.0 / len(levels))
            moved = base.copy()
            if shifted:
                moved[0] += 0.12
                moved /= moved.sum()
            ref_codes = ref_rng.choice(len(levels), rows, p=base)
            cur_codes = cur_rng.choice(len(levels), rows, p=moved)
            if i % 3 == 0:  # plain Python strings (object dtype)
                values = np.asarray(levels, dtype=object)
                reference[name] = values[ref_codes]
                current[name] = values[cur_codes]
            else:
                reference[name] = pd.Categorical.from_codes(ref_codes, levels)
                current[name] = pd.Categorical.from_codes(cur_codes, levels)
    return pd.DataFrame(reference), pd.DataFrame(current)


# ----------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    import resource

    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ----------------------------------------------------------------------------- workers


def evidently_verdicts(reference: Any, current: Any) -> dict[str, bool]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=current, reference_data=reference
    )
    verdicts = {}
    for test in snapshot.dict()["tests"]:
        if test["id"] == "drift":
            verdicts[test["metric_config"]["params"]["column"]] = test["status"] == "FAIL"
    return verdicts


def ours_verdicts(reference: Any, current: Any) -> tuple[dict[str, bool], dict[str, str]]:
    from autokfp.monitoring.drift import detect_drift

    report = detect_drift(reference, current)
    return (
        {c.column: c.drifted for c in report.columns},
        {c.column: c.method for c in report.columns},
    )


def worker(engine: str, rows: int, columns: int, small_rows: int) -> dict[str, Any]:
    """Run inside a fresh interpreter: generate, reset the peak, compute, measure."""
    warnings.filterwarnings("ignore")
    if engine == "evidently":  # import outside the timed part, like ours
        import evidently.presets  # noqa: F401
    else:
        import autokfp.monitoring.drift  # noqa: F401
    reference, current = make_frames(rows, columns)
    gc.collect()
    data_kb = _status_kb("VmRSS") or 0
    exact_peak = _reset_peak()
    started = time.perf_counter()
    if engine == "evidently":
        verdicts = evidently_verdicts(reference, current)
        methods: dict[str, str] = {}
    else:
        verdicts, methods = ours_verdicts(reference, current)
    seconds = time.perf_counter() - started
    result = {
        "engine": engine,
        "rows": rows,
        "columns": columns,
        "seconds": seconds,
        "peak_gb": _peak_kb() / 1024**2,
        "data_gb": data_kb / 1024**2,
        "peak_is_exact": exact_peak,
        "verdicts": verdicts,
        "methods": methods,
    }
    if engine == "evidently":
        # agreement, on the same frames: ours here too, plus a small sample (small-sample tests)
        result["ours_verdicts"], result["methods"] = ours_verdicts(reference, current)
        del reference, current
        small_ref, small_cur = make_frames(small_rows, columns, seed=7)
        result["small_evidently"] = evidently_verdicts(small_ref, small_cur)
        result["small_ours"], result["small_methods"] = ours_verdicts(small_ref, small_cur)
    return result


def write_parquet(directory: Path, rows: int, columns: int) -> tuple[Path, Path]:
    """Both sides as Parquet, written in PIECE_ROWS pieces (each piece its own seeds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    ref_path, cur_path = directory / f"reference_{rows}x{columns}.parquet", directory / (
        f"current_{rows}x{columns}.parquet")
    if ref_path.exists() and cur_path.exists():
        return ref_path, cur_path
    writers: dict[str, Any] = {}
    try:
        for piece, start in enumerate(range(0, rows, PIECE_ROWS)):
            reference, current = make_frames(min(PIECE_ROWS, rows - start), columns,
                                              seed=10 * piece)
            for side, frame in (("ref", reference), ("cur", current)):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if side not in writers:
                    path = ref_path if side == "ref" else cur_path
                    writers[side] = pq.ParquetWriter(str(path) + ".part", table.schema)
                writers[side].write_table(table, row_group_size=PIECE_ROWS // 4)
            del reference, current
    finally:
        for writer in writers.values():
            writer.close()
    for path in (ref_path, cur_path):
        Path(str(path) + ".part").rename(path)
    return ref_path, cur_path


def stream_worker(ref_path: str, cur_path: str, compare: bool) -> dict[str, Any]:
    """Inside a fresh interpreter: stream the verdicts (and compare with frames if asked)."""
    warnings.filterwarnings("ignore")
    from autokfp.monitoring.drift_stream import detect_drift_parquet

    gc.collect()
    exact_peak = _reset_peak()
    cpu_before = time.process_time()
    started = time.perf_counter()
    report = detect_drift_parquet(ref_path, cur_path)
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "seconds": seconds, "cpu_seconds": time.process_time() - cpu_before, "peak_gb": _peak_kb() / 1024**2, "peak_is_exact": exact_peak,
        "verdicts": {c.column: c.drifted for c in report.columns},
        "methods": {c.column: c.method for c in report.columns},
        "scores": {c.column: c.score for c in report.columns},
    }
    if compare:
        import pandas as pd

        from autokfp.monitoring.drift import detect_drift

        frames = detect_drift(pd.read_parquet(ref_path), pd.read_parquet(cur_path))
        result["frame_verdicts"] = {c.column: c.drifted for c in frames.columns}
        result["frame_scores"] = {c.column: c.score for c in frames.columns}
    return result


def run_stream(ref_path: Path, cur_path: Path, compare: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--stream-worker", str(ref_path), str(cur_path)]
    if compare:
        command.append("--compare")
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise RuntimeError(f"stream worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main_parquet(args: argparse.Namespace) -> int:
    import tempfile

    directory = Path(args.data_dir or tempfile.mkdtemp(prefix="drift-parquet-"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Streaming drift benchmark: {args.rows:,} rows x {args.columns} columns per side "
          f"({os.cpu_count()} cores, load average {load:.1f}); files in {directory}")
    started = time.perf_counter()
    ref_path, cur_path = write_parquet(directory, args.rows, args.columns)
    size_gb = (ref_path.stat().st_size + cur_path.stat().st_size) / 1024**3
    print(f"data: {size_gb:.2f} GB of Parquet for both sides "
          f"({time.perf_counter() - started:.0f} s to write or find)")
    full = run_stream(ref_path, cur_path, compare=args.rows <= args.compare_rows)
    print(f"\nstreamed {args.rows:,} rows/side: {full['seconds']:.1f} s wall, "
          f"{full['cpu_seconds']:.1f} s CPU (both cores together), peak {full['peak_gb']:.2f} GB "
          f"(load average now {os.getloadavg()[0]:.1f})")
    if args.rows <= args.compare_rows:
        compared, rows = full, args.rows
    else:
        small_ref, small_cur = write_parquet(directory, args.compare_rows, args.columns)
        compared, rows = run_stream(small_ref, small_cur, compare=True), args.compare_rows
        print(f"streamed {rows:,} rows/side: {compared['seconds']:.1f} s, "
              f"peak {compared['peak_gb']:.2f} GB (frames compared in the same process)")
    same = sum(compared["verdicts"][c] == compared["frame_verdicts"].get(c)
               for c in compared["verdicts"])
    same_columns = set(compared["verdicts"]) == set(compared["frame_verdicts"])
    worst = max((abs(compared["scores"][c] - compared["frame_scores"][c])
                 / max(abs(compared["frame_scores"][c]), 1e-12)
                 for c in compared["verdicts"] if compared["scores"][c] is not None), default=0.0)
    print(f"verdicts equal to whole-frame detect_drift at {rows:,} rows: "
          f"{same}/{len(compared['frame_verdicts'])} (largest relative score gap {worst:.1e})")
    print(f"drifted columns: {sum(full['verdicts'].values())} of {len(full['verdicts'])}")
    checks = [
        (f"{args.rows:,} rows streamed in at most {STREAM_TIME_TARGET_S:.0f} s",
         full["seconds"] <= STREAM_TIME_TARGET_S),
        (f"peak memory under {STREAM_MEMORY_TARGET_GB:.0f} GB",
         full["peak_gb"] < STREAM_MEMORY_TARGET_GB),
        ("every streamed verdict equals the whole-frame one",
         same_columns and same == len(compared["frame_verdicts"])),
    ]
    print()
    for label, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {label}")
    return 0


def run_worker(engine: str, rows: int, columns: int, small_rows: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        engine,
        "--rows",
        str(rows),
        "--columns",
        str(columns),
        "--small-rows",
        str(small_rows),
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def _agreement(
    ours: dict[str, bool], theirs: dict[str, bool], methods: dict[str, str]
) -> dict[str, Any]:
    both = sorted(set(ours) & set(theirs))
    per_method: dict[str, list[int]] = {}
    disagreements = []
    for column in both:
        same = ours[column] == theirs[column]
        counts = per_method.setdefault(methods.get(column, "?"), [0, 0])
        counts[0] += same
        counts[1] += 1
        if not same:
            disagreements.append(column)
    return {
        "columns": len(both),
        "agree": sum(c[0] for c in per_method.values()),
        "per_method": per_method,
        "disagreements": disagreements,
        "only_ours": sorted(set(ours) - set(theirs)),
        "only_evidently": sorted(set(theirs) - set(ours)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side")
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument(
        "--evidently-rows",
        type=int,
        default=100_000,
        help="rows per side for Evidently (its rows/s is measured there)",
    )
    parser.add_argument(
        "--small-rows",
        type=int,
        default=800,
        help="rows per side of the small-sample agreement check (<= 1000)",
    )
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    parser.add_argument("--parquet", action="store_true",
                        help="measure streaming from Parquet (detect_drift_parquet)")
    parser.add_argument("--data-dir", help="where --parquet writes (and reuses) its files")
    parser.add_argument("--compare-rows", type=int, default=1_000_000,
                        help="--parquet: rows per side where frames are compared too")
    parser.add_argument("--worker", choices=["ours", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--stream-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stream_worker:
        print(json.dumps(stream_worker(*args.stream_worker, args.compare)))
        return 0
    if args.parquet:
        return main_parquet(args)
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.columns, args.small_rows)))
        return 0

    print(
        f"Drift benchmark: {args.rows:,} rows x {args.columns} columns per side "
        f"({os.cpu_count()} cores); Evidently on {args.evidently_rows:,} rows per side"
    )
    ours_full = run_worker("ours", args.rows, args.columns, args.small_rows)
    ours_same = (
        ours_full
        if args.evidently_rows == args.rows
        else run_worker("ours", args.evidently_rows, args.columns, args.small_rows)
    )
    theirs = run_worker("evidently", args.evidently_rows, args.columns, args.small_rows)

    extrapolated = args.evidently_rows != args.rows

    def rate(result: dict[str, Any]) -> float:
        return result["rows"] / result["seconds"]

    evidently_full_s = args.rows / rate(theirs)
    rows_fmt = f"{args.rows:,}"
    lines = [
        (
            "ours",
            rows_fmt,
            ours_full["seconds"],
            rate(ours_full),
            ours_full["peak_gb"],
            ours_full["data_gb"],
        )
    ]
    if extrapolated:
        lines.append(
            (
                "ours",
                f"{args.evidently_rows:,}",
                ours_same["seconds"],
                rate(ours_same),
                ours_same["peak_gb"],
                ours_same["data_gb"],
            )
        )
    lines.append(
        (
            "evidently",
            f"{args.evidently_rows:,}",
            theirs["seconds"],
            rate(theirs),
            theirs["peak_gb"],
            theirs["data_gb"],
        )
    )
    print(
        f"\n{'engine':<10} {'rows/side':>11} {'seconds':>9} {'rows/s':>12} "
        f"{'peak GB':>8} {'data GB':>8}"
    )
    for engine, rows, seconds, per_second, peak, data in lines:
        print(
            f"{engine:<10} {rows:>11} {seconds:>9.2f} {per_second:>12,.0f} "
            f"{peak:>8.2f} {data:>8.2f}"
        )
    if extrapolated:
        print(
            f"{'evidently':<10} {rows_fmt:>11} {evidently_full_s:>9.1f} {rate(theirs):>12,.0f}"
            f" {'-':>8} {'-':>8}   <- EXTRAPOLATED linearly from its rate at "
            f"{args.evidently_rows:,} rows, not measured"
        )
    if not ours_full["peak_is_exact"]:
        print("(peak memory is the process lifetime peak: /proc/self/clear_refs was not writable)")

    speedup_same = rate(ours_same) / rate(theirs)
    speedup_full = rate(ours_full) / rate(theirs)
    print(f"\nspeed-up at {args.evidently_rows:,} rows (both measured): {speedup_same:.1f}x")
    if extrapolated:
        print(
            f"speed-up at {rows_fmt} rows (ours measured, Evidently EXTRAPOLATED): "
            f"{speedup_full:.1f}x"
        )

    large = _agreement(theirs["ours_verdicts"], theirs["verdicts"], theirs["methods"])
    small = _agreement(theirs["small_ours"], theirs["small_evidently"], theirs["small_methods"])
    total = large["columns"] + small["columns"]
    agree = large["agree"] + small["agree"]
    print(f"\nagreement of per-column verdicts: {agree}/{total} ({agree / max(total, 1):.1%})")
    for result, rows in ((large, args.evidently_rows), (small, args.small_rows)):
        methods = ", ".join(f"{m} {a}/{n}" for m, (a, n) in sorted(result["per_method"].items()))
        print(f"  {rows:>9,} rows/side: {result['agree']}/{result['columns']}  ({methods})")
        if result["disagreements"]:
            print(f"    disagree on: {', '.join(result['disagreements'])}")
        if result["only_ours"] or result["only_evidently"]:
            print(
                f"    tested by one side only: ours {result['only_ours']}, "
                f"Evidently {result['only_evidently']}"
            )
    drifted = sum(theirs["verdicts"].values())
    print(
        f"  (Evidently found drift in {drifted} of {len(theirs['verdicts'])} columns "
        f"at {args.evidently_rows:,} rows)"
    )

    checks = [
        (
            f"ours at {rows_fmt} rows under {TIME_TARGET_S:.0f} s",
            ours_full["seconds"] < TIME_TARGET_S,
        ),
        (
            f"ours peak memory under {MEMORY_TARGET_GB:.0f} GB",
            ours_full["peak_gb"] < MEMORY_TARGET_GB,
        ),
        (
            f"at least {SPEEDUP_TARGET:.0f}x Evidently's rows/s (at equal size)",
            speedup_same >= SPEEDUP_TARGET,
        ),
        ("every verdict agrees with Evidently's", agree == total and total > 0),
    ]
    print()
    for label, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {label}")
    if args.json:
        print(
            json.dumps(
                {"ours": ours_full, "ours_same_size": ours_same, "evidently": theirs}, default=str
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
