"""The `refit_model` step: after the champion gate, the chosen configuration fitted again on
every labelled row, and that model served.

The gate (``evaluate_model``) compares the candidate with the champion on the fixed test rows
(``modeling.partition``: the same rows every run), so no model it compares may have seen them.
On a small table those rows are a real share of the data (wine: 31 of 133), so once the gate
has passed, the engine trains the same configuration again (no search: H2O the leader's
algorithm with its parameters, or its stacked ensemble's recipe; AutoKeras the chosen
architecture) on the training and test rows together, and that package is what is
registered and served. The gated package stays inside it (``gate_model/``), so the next
run's gate scores it, never the all-rows model, on the test rows.

Before that, the refit is checked on rows it has not seen: the same recipe is also fitted on
the training rows only (the gated model's own rows; first, in the same child process as the
all-rows fit, which shares its H2O JVM or TensorFlow import) and scored on the test rows next
to the gated model; it must not be worse there beyond what those rows resolve
(``holdout_rule``: a paired bootstrap, the margin the shortfall's se within
``training.refit_score_tolerance`` / ``refit_loss_tolerance``; a recipe that does not
reproduce the gated model, or overfits, is rejected), and
its decisions per group there, with the gated model's fairness mitigation applied, must meet
the fairness policy if the gated model's did. The child makes this check between the two
fits, so a rejected recipe is never fitted on every row. The all-rows fit is then checked on
every labelled row, which only catches a fit that broke (it has seen those rows).

Refitting never fails the run: an engine without ``refit``, an error, a crash or a refit that
fails a check serves the gated model, and the package's ``meta.serving`` says why and how the
refit ended (``refit``: ``failed``, ``rejected``, ``unsupported`` or ``not wanted``). A refit
that was wanted but did not happen is a warning in the step's log, a ``model.refit_rejected``
audit event with that outcome and reason, and a warning in the model card.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autokfp.config import RunConfig
from autokfp.config.training import TrainingSpec
from autokfp.governance.audit import batched
from autokfp.steps.io import read_config, read_json, record_event
from autokfp.steps.results import Publication, StepResult, finite_metrics

log = logging.getLogger(__name__)

REFIT, GATED = "refit", "gated"
# how a refit that is not served ended (``meta.serving.refit``): it raised or its child
# crashed (an H2O JVM that did not start, out of memory, ...), a check rejected it, the
# engine cannot refit, or the run did not ask for one (training.refit_for_serving, the gate)
FAILED, REJECTED, UNSUPPORTED, NOT_WANTED = "failed", "rejected", "unsupported", "not wanted"
# The held-out check: the recipe fitted on the training rows only (what the gated model was
# fitted on) and the gated model, scored on the test rows (which neither saw). The refit's
# shortfall there (points of AUC/accuracy/F1/R² below the gated model, or the share of the
# gated model's log loss/RMSE/MAE above it) is bootstrapped on those same rows, paired
# (``holdout_rule``), and the refit is rejected when P(shortfall > margin) >= the selection's
# confidence, the margin being the shortfall's own standard error, kept between a tenth of
# the tolerance below and the tolerance. On a few hundred rows a shortfall within the noise
# passes (an AUC's se is ~0.02 there: a fixed 0.02 rejected good refits on unlucky draws);
# on tens of thousands a real one smaller than the tolerance is caught. The tolerances are
# ``training.refit_score_tolerance`` / ``refit_loss_tolerance``; these are their defaults.
# H2O's recipe on the same rows reproduces the gated model (docs/training.md, "Refit for
# serving"); AutoKeras' network from fresh weights differs by its seed's noise. A recipe that
# was corrupted, or overfits, falls far outside (tests/engine/training/test_refit_for_serving.py).
HOLDOUT_SCORE_TOLERANCE = TrainingSpec.model_fields["refit_score_tolerance"].default
HOLDOUT_LOSS_TOLERANCE = TrainingSpec.model_fields["refit_loss_tolerance"].default
# the held-out rule's bootstrap, when the run's selection settings do not say
HOLDOUT_CONFIDENCE, HOLDOUT_SAMPLES = 0.9, 500
# the rule's margin is never under this share of the tolerance
NEGLIGIBLE_SHARE = 0.1
# The sanity check of the all-rows fit: scored on every labelled row (all of which it was
# fitted on), it may be worse than the gated model there by at most this. It catches a fit
# that broke (diverged, did not train, saved badly), never one that overfits: that is the
# held-out check's job.
REFIT_SCORE_TOLERANCE = 0.02
REFIT_LOSS_TOLERANCE = 0.10
# What a refit costs beyond its two fits (``refit_estimate``): the child's start and imports,
# the engine's (H2O's JVM), the held-out check scoring both packages on the test rows, two
# packages assembled, and the sanity check on every labelled row in the step. Measured on
# diamonds (40,455 rows; session 19, load 5-12): JVM 16.1 s, the rest of the child 25.1 s,
# the sanity check 26.4 s.
REFIT_OVERHEAD_SECS = 70.0


@dataclass(frozen=True)
class Refitted(StepResult):
    """Which model is served (``refit`` or ``gated``), why, and the rows each was fitted on."""

    served: str
    reason: str
    engine: str
    gate_fitted_rows: int
    served_fitted_rows: int
    figures: dict[str, float] = field(default_factory=dict)
    # how a refit that is not served ended (FAILED, REJECTED, UNSUPPORTED, NOT_WANTED)
    outcome: str = ""

    def publication(self) -> Publication:
        model = {"engine": self.engine, "framework": "mlflow-pyfunc", "served": self.served,
                 "serving_reason": self.reason[:1000]}
        if self.outcome:
            model["refit"] = self.outcome
        return Publication(
            metrics={"gate_fitted_rows": float(self.gate_fitted_rows),
                     "served_fitted_rows": float(self.served_fitted_rows),
                     **finite_metrics(self.figures)},
            metadata={"model": model},
            returns=(self.served,))


def refit_wanted(cfg: RunConfig, evaluation: dict[str, Any], labelled_rows: int,
                 estimate: Callable[[], tuple[float | None, str]] | None = None) -> str:
    """Why the gated model is served as it is, or "" when it is to be refitted. ``estimate``:
    the refit's seconds and their basis (``refit_estimate``), asked only for a table over
    ``training.refit_max_rows`` under ``auto``: it is refitted when they are within
    ``training.refit_max_secs``."""
    setting = cfg.training.refit_for_serving
    if setting == "never":
        return "training.refit_for_serving is never"
    if not (evaluation.get("comparison") or {}).get("promote"):
        return ("the model did not pass the champion gate (it is kept as challenger), so it "
                "is not refitted")
    max_rows, max_secs = cfg.training.refit_max_rows, cfg.training.refit_max_secs
    if setting == "auto" and labelled_rows > max_rows:
        seconds, basis = (estimate() if estimate is not None and max_secs > 0
                          else (None, "training.refit_max_secs is 0" if max_secs <= 0
                                else "no estimate was made"))
        if seconds is not None and seconds <= max_secs:
            return ""
        why = (f"it is estimated at {seconds:.0f}s ({basis}), over training.refit_max_secs "
               f"({max_secs:.0f}s)" if seconds is not None
               else f"its time cannot be estimated ({basis})")
        return (f"{labelled_rows} labelled rows, over training.refit_max_rows ({max_rows}), "
                f"and {why}: the gated model serves (training.refit_for_serving: always "
                "refits anyway)")
    return ""


def refit_estimate(cfg: RunConfig, model_path: str, train_rows: int, labelled_rows: int
                   ) -> tuple[float | None, str]:
    """About how many seconds the refit of the package at ``model_path`` takes (what
    ``refit_wanted`` bounds by ``training.refit_max_secs``), and on what basis: its engine's
    estimate of one fit (``refit_seconds``: the configuration's own fit times in the search,
    scaled to the rows) on the ``train_rows`` (the held-out check's fit) and on all
    ``labelled_rows``, plus ``REFIT_OVERHEAD_SECS``. (None, why) when the engine gives none
    or it fails (a refit never fails the run)."""
    from autokfp.engine_registry import get_engine

    try:
        meta = json.loads(Path(model_path, "artifacts", "meta.json").read_text())
        engine = str(meta.get("engine"))
        estimator = getattr(get_engine(engine, cfg.engines.get(engine)), "refit_seconds", None)
        if estimator is None:
            return None, f"the {engine} engine gives no estimate of its refit's time"
        folder = Path(model_path, "artifacts", "engine")
        trained = int(meta.get("trained_rows") or train_rows)  # the rows the search was given
        # one fit when the refit is judged by its own out-of-fold predictions, else two
        once = _judged_out_of_fold(get_engine(engine, cfg.engines.get(engine)), model_path,
                                   meta, train_rows)
        fits = [estimator(folder, trained, rows)
                for rows in ((labelled_rows,) if once else (train_rows, labelled_rows))]
    except Exception as exc:  # noqa: BLE001 - no estimate: the gated model serves
        return None, f"the estimate failed ({type(exc).__name__}: {exc})"
    if any(fit is None for fit in fits):
        return None, (f"the {engine} package records no fit times to estimate from (trained "
                      "before they were kept)")
    if once:
        ((all_rows, basis),) = fits  # type: ignore[misc]
        seconds = round(REFIT_OVERHEAD_SECS + all_rows, 1)
        return seconds, (f"{all_rows:.0f}s on all {labelled_rows} rows (judged by its own "
                         f"out-of-fold predictions: no held-out fit), from {basis}, scaled "
                         f"to the rows, and {REFIT_OVERHEAD_SECS:.0f}s to start and check")
    (held_out, basis), (all_rows, _) = fits  # type: ignore[misc]
    seconds = round(REFIT_OVERHEAD_SECS + held_out + all_rows, 1)
    return seconds, (f"{held_out:.0f}s on the {train_rows} training rows for the held-out "
                     f"check and {all_rows:.0f}s on all {labelled_rows}, from {basis}, "
                     f"scaled to the rows, and {REFIT_OVERHEAD_SECS:.0f}s to start and check")


@batched
def refit_model(config: dict[str, Any] | RunConfig, model_path: str, evaluation_path: str,
                train_path: str, test_path: str, out_model_path: str) -> Refitted:
    """Write the package to register and serve at ``out_model_path``: the gated package
    (``model_path``) refitted on the training and test rows when ``refit_wanted`` says so and
    the refit passes its check, with the gated package kept inside as ``gate_model/``;
    otherwise the gated package itself. Its ``meta.serving`` says which and why; a refit
    is recorded in the audit trail (``model.refit``)."""
    import pyarrow.parquet as pq

    cfg = read_config(config)
    evaluation = read_json(evaluation_path)
    meta = json.loads(Path(model_path, "artifacts", "meta.json").read_text())
    gate_rows = int(meta.get("fitted_rows") or meta.get("trained_rows") or 0)
    train_rows = pq.ParquetFile(train_path).metadata.num_rows
    test_rows = pq.ParquetFile(test_path).metadata.num_rows
    estimated: dict[str, Any] = {}  # over refit_max_rows: the estimate it was judged by

    def estimate() -> tuple[float | None, str]:
        seconds, basis = refit_estimate(cfg, model_path, train_rows, train_rows + test_rows)
        estimated.update(seconds=seconds, basis=basis,
                         max_secs=cfg.training.refit_max_secs)
        return seconds, basis

    reason = refit_wanted(cfg, evaluation, train_rows + test_rows, estimate)
    outcome = NOT_WANTED if reason else ""
    figures: dict[str, float] = {}
    if not reason:
        started = time.monotonic()
        try:
            reason, figures = _refit(cfg, model_path, train_path, test_path, out_model_path,
                                     meta, gate_rows, estimated)
            outcome = (REJECTED if figures else UNSUPPORTED) if reason else ""
        except Exception as exc:  # noqa: BLE001 - a refit never fails the run
            reason = f"the refit failed ({type(exc).__name__}: {exc})"[:2000]
            outcome = FAILED
        figures["refit_seconds"] = round(time.monotonic() - started, 1)
    if estimated.get("seconds") is not None:  # next to refit_seconds: how good it was
        figures["refit_estimate_seconds"] = float(estimated["seconds"])
    if not reason:
        served = json.loads(Path(out_model_path, "artifacts", "meta.json").read_text())
        record_event("model.refit", served["serving"], cfg.model_name)
        log.info("serving the refit: %s", served["serving"]["reason"])
        return Refitted(REFIT, served["serving"]["reason"], meta["engine"], gate_rows,
                        int(served["fitted_rows"]), figures)
    if outcome == NOT_WANTED:
        log.info("serving the gated model (fitted on %d rows): %s", gate_rows, reason)
    else:  # a refit was wanted and did not happen: say so where the run is read
        log.warning("the refit on every labelled row did not happen (%s): %s. Serving the "
                    "gated model instead, fitted on %d rows without the %d test rows",
                    outcome, reason, gate_rows, test_rows)
    _serve_gated(model_path, out_model_path, meta, gate_rows, reason, outcome)
    if outcome != NOT_WANTED:  # a refit was tried: the audit trail says why it is not served
        record_event("model.refit_rejected", {"outcome": outcome, "reason": reason,
                                              "served": GATED, "gate_fitted_rows": gate_rows,
                                              **figures}, cfg.model_name)
    return Refitted(GATED, reason, meta["engine"], gate_rows, gate_rows, figures, outcome)


def _serve_gated(model_path: str, out_model_path: str, meta: dict[str, Any], gate_rows: int,
                 reason: str, outcome: str) -> None:
    """The gated package at ``out_model_path`` as it is, its ``meta.serving`` saying why."""
    staging = _staging(out_model_path)
    shutil.copytree(model_path, staging)
    served = {**meta, "serving": {"model": GATED, "fitted_rows": gate_rows, "reason": reason,
                                  "refit": outcome}}
    Path(staging, "artifacts", "meta.json").write_text(json.dumps(served, indent=2, default=str))
    _publish(staging, out_model_path)


def _refit(cfg: RunConfig, model_path: str, train_path: str, test_path: str,
           out_model_path: str, meta: dict[str, Any], gate_rows: int,
           estimated: dict[str, Any] | None = None) -> tuple[str, dict[str, float]]:
    """The held-out check, then the all-rows refit (each in a child process), the served
    package assembled and checked: ("", figures) when it is served, else (why not, figures).
    ``estimated``: the time estimate a table over ``refit_max_rows`` was refitted by (its
    ``meta.serving.estimate``)."""
    from autokfp.engine_registry import get_engine

    engine = meta["engine"]
    trainer = get_engine(engine, cfg.engines.get(engine))
    if not hasattr(trainer, "refit"):
        return f"the {engine} engine cannot refit a model (it has no refit)", {}
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="autokfp-refit-") as scratch:
        rows = Path(scratch, "labelled.parquet")
        labelled = _concat_parquet([train_path, test_path], rows)
        staging = _staging(out_model_path)
        fairness: dict[str, Any] | None = None
        if _judged_out_of_fold(trainer, model_path, meta, labelled - _rows_in(test_path)):
            # one fit: the recipe on every labelled row, judged by its own out-of-fold
            # predictions of the training rows against the gated model's (_out_of_fold_check)
            (fitted,) = _refit_packages(cfg, engine, model_path, [(str(rows), staging)])
            summary = _fitted(fitted)["summary"]
            holdout = _out_of_fold_check(cfg, model_path, str(staging), meta, labelled)
            figures.update(_figures("holdout", holdout))
            if not holdout["passed"]:
                shutil.rmtree(staging, ignore_errors=True)
                return (f"the refit was rejected: its {holdout['detail']}"), figures
        else:
            # both fits in one child (one interpreter, one H2O JVM or TensorFlow import for
            # the two): the recipe on the gated model's own rows, checked there
            # (holdout_check), and only if it passes, on every labelled row
            trial, fitted = _refit_packages(
                cfg, engine, model_path,
                [(train_path, Path(scratch, "holdout")), (str(rows), staging)],
                holdout={"config": cfg.to_dict(), "model_path": str(model_path),
                         "train_path": str(train_path), "test_path": str(test_path),
                         # read here, in the step's process, not in the child's fresh import
                         "score_tolerance": cfg.training.refit_score_tolerance,
                         "loss_tolerance": cfg.training.refit_loss_tolerance})
            # 1. the recipe on the gated model's own rows, judged on the test rows against it
            trial = _fitted(trial)
            holdout, fairness = trial["check"]["holdout"], trial["check"]["fairness"]
            figures.update(_figures("holdout", holdout))
            figures["holdout_refit_seconds"] = trial["summary"]["seconds"]
            if not holdout["passed"]:
                return (f"the refit was rejected: fitted on the training rows only, its "
                        f"{holdout['detail']}"), figures
            if fairness is not None and fairness["rejected"]:
                return f"the refit was rejected: {fairness['detail']}", figures
            # 2. the same recipe on every labelled row: the model to serve
            summary = _fitted(fitted)["summary"]
        _drop_refit_out_of_fold(staging)
        sanity = _compare(model_path, str(staging), str(rows), meta, REFIT_SCORE_TOLERANCE,
                          REFIT_LOSS_TOLERANCE, "every labelled row (the refit was fitted on "
                          "all of them: this only catches a fit that broke)")
        figures.update(_figures("all_rows", sanity))
        check = {**sanity, "passed": bool(holdout["passed"] and sanity["passed"]),
                 "holdout": holdout, "all_rows": sanity, "fairness": fairness,
                 "detail": f"{'out of fold' if holdout.get('basis') else 'held out'}: "
                           f"{holdout['detail']}; sanity: {sanity['detail']}"
                           + (f"; fairness: {fairness['detail']}" if fairness else "")}
        if not sanity["passed"]:
            shutil.rmtree(staging, ignore_errors=True)
            return f"the refit was rejected: {sanity['detail']}", figures
        shutil.copytree(model_path, staging / _gate_dir())
        served = dict(meta)
        served.update({
            "leader": summary["leader"], "trained_rows": labelled, "fitted_rows": labelled,
            "params": {**meta.get("params", {}), "refit_after_gate": summary["params"]},
            "serving": {
                "model": REFIT, "fitted_rows": labelled, "gate_fitted_rows": gate_rows,
                "gate_model": _gate_dir(), "gate_leader": meta.get("leader"),
                "train_rows": labelled - int(summary["test_rows"]),
                "test_rows": int(summary["test_rows"]),
                "refit_seconds": summary["seconds"], "check": check,
                **({"estimate": estimated} if estimated else {}),
                "reason": (f"the gated {engine} configuration ({meta.get('leader')}) fitted "
                           f"again on all {labelled} labelled rows (the gated model: "
                           f"{gate_rows}; the {summary['test_rows']} test rows too) after it "
                           "passed the champion gate" + _members_note(summary["params"])
                           + (f"; over training.refit_max_rows ({cfg.training.refit_max_rows}) "
                              f"it was estimated at {estimated['seconds']:.0f}s, within "
                              f"training.refit_max_secs ({estimated['max_secs']:.0f}s)"
                              if estimated and estimated.get("seconds") is not None else ""))}})
        served.pop("holdout_rows", None)  # the gated model's out-of-sample rows, not the refit's
        Path(staging, "artifacts", "meta.json").write_text(json.dumps(served, indent=2,
                                                                      default=str))
        _publish(staging, out_model_path)
    return "", figures


def _refit_packages(cfg: RunConfig, engine: str, model_path: str,
                    fits: list[tuple[str, Path]],
                    holdout: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The gated package refitted on the rows of each ``(rows_path, package)``, in order, in
    one child process (``refit_engines``), each written at its ``package`` (the gated package
    with that refit's engine files): per fit ``{"package", "summary"}``, or ``{"error"}``
    (an ``EngineFailure`` as that fit alone in its child would have raised it). With
    ``holdout`` (``holdout_check``'s arguments but the package), the first fit is checked in
    the child before the others run, its ``check`` returned with it; a rejected one ends the
    child there. The child gets each fit's time limit; a child that crashed or ran out of
    time fails them all."""
    from autokfp.training.isolation import engine_timeout, run_isolated

    engine_dirs = [package.parent / f".{package.name}.engine" for _, package in fits]
    for folder in engine_dirs:
        shutil.rmtree(folder, ignore_errors=True)
    try:
        outcomes = run_isolated(
            "autokfp.steps.refit_model:refit_engines",
            {"config": cfg.training_settings(engine).to_dict(), "engine": engine,
             "model_path": str(model_path),
             "fits": [{"rows_path": str(rows), "engine_dir": str(folder),
                       "package": str(package)}
                      for (rows, package), folder in zip(fits, engine_dirs)],
             "holdout": holdout},
            timeout=engine_timeout(cfg.budget.max_runtime_secs) * len(fits))
    except BaseException:
        for (_, package), folder in zip(fits, engine_dirs):  # what a dead child left
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(package, ignore_errors=True)
        raise
    results: list[dict[str, Any]] = []
    for (_, package), folder, outcome in zip(fits, engine_dirs, outcomes):
        if "error" in outcome:
            shutil.rmtree(folder, ignore_errors=True)
            results.append(outcome)
            continue
        results.append({**outcome, "package": package})
    return results


def _assemble(model_path: str, engine_dir: Path, package: Path) -> None:
    """At ``package``: the gated package but its engine folder (the model itself), then the
    refit's (``engine_dir``, moved there)."""
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(model_path, package, ignore=_engine_folder_of(model_path))
    shutil.move(str(engine_dir), str(package / "artifacts" / "engine"))


def holdout_check(config: dict[str, Any], model_path: str, package: str, train_path: str,
                  test_path: str, score_tolerance: float = HOLDOUT_SCORE_TOLERANCE,
                  loss_tolerance: float = HOLDOUT_LOSS_TOLERANCE) -> dict[str, Any]:
    """The refit recipe fitted on the training rows only (``package``) judged on rows it has
    not seen: its ``holdout`` comparison with the gated package (``model_path``) on the test
    rows, and, when that passes, its ``fairness`` there (``_served_fairness``; None when it
    was not checked or the model has no sensitive columns); ``rejected`` when either fails."""
    from autokfp.config import parse_config

    cfg = parse_config(config, origin="refit settings")
    meta = json.loads(Path(model_path, "artifacts", "meta.json").read_text())
    holdout = _compare(model_path, package, test_path, meta, score_tolerance, loss_tolerance,
                       "the test rows (neither model saw them; the refit fitted on the "
                       "training rows only)",
                       paired=(cfg.selection.confidence, cfg.selection.bootstrap_samples,
                               cfg.split.seed))
    fairness = None
    if holdout["passed"]:
        # what serves is audited too: the recipe's decisions per group on rows it did not
        # see, with the gated model's fairness mitigation applied as serving applies it
        fairness = _served_fairness(cfg, package, train_path, test_path, meta)
    rejected = not holdout["passed"] or bool(fairness is not None and fairness["rejected"])
    return {"holdout": holdout, "fairness": fairness, "rejected": rejected}


def _fitted(outcome: dict[str, Any]) -> dict[str, Any]:
    """A fit of ``_refit_packages``, or its error raised as the fit's own child raised it."""
    from autokfp.training.isolation import EngineFailure

    if "error" in outcome:
        raise EngineFailure(outcome["error"], "error", outcome.get("error_type"))
    return outcome


def _judged_out_of_fold(trainer: Any, model_path: str, meta: dict[str, Any],
                        train_rows: int) -> bool:
    """Whether the refit is judged by its own out-of-fold predictions (``_out_of_fold_check``)
    instead of a second fit on the training rows: the engine's refit of this package keeps
    them (``refit_out_of_fold``: H2O's cross-validated stacked ensembles), the gated package
    kept its own out-of-fold predictions of the training rows (``holdout.npz``, kind
    ``out_of_fold``), and no fairness check needs the recipe's decisions on rows it did not
    see (a binary classifier with sensitive columns keeps the held-out fit:
    ``_served_fairness``)."""
    from autokfp.modeling.estimate import OUT_OF_FOLD, read_holdout

    keeps = getattr(trainer, "refit_out_of_fold", None)
    if keeps is None or not keeps(Path(model_path, "artifacts", "engine")):
        return False
    if meta.get("task") == "binary" and (meta.get("fairness") or {}).get("sensitive_columns"):
        return False
    stored = read_holdout(model_path)
    return (stored is not None and stored.kind == OUT_OF_FOLD and len(stored.positions) > 1
            and int(stored.positions.min()) >= 0 and int(stored.positions.max()) < train_rows)


def _out_of_fold_check(cfg: RunConfig, model_path: str, package: str, meta: dict[str, Any],
                       labelled: int) -> dict[str, Any]:
    """The recipe refitted on every labelled row (``package``; the training rows first, in
    their order) judged on the training rows, out of fold on both sides: its own out-of-fold
    predictions of them (``estimate.REFIT_OOF_FILE``: each row scored by the ensemble's fold
    models and metalearner fold that did not see it) against the gated model's
    (``holdout.npz``, the same rows), the package's calibration applied to both as serving
    applies it, by ``holdout_rule`` (paired bootstrap on those rows, the same tolerances and
    confidence). What it guards is what the held-out fit guarded: a recipe that refits badly
    (a wrong metalearner, parameters that do not reproduce the configuration, members that
    memorise their rows) scores worse than the gated model on rows its models did not see.
    The refit's fold models saw more rows than the gated model's (its test rows too), which
    favours it by what those rows are worth; the gated model's were chosen on these folds
    (AutoML's leaderboard), which favours the gated model."""
    import numpy as np

    from autokfp.modeling.estimate import REFIT_OOF_FILE, read_holdout
    from autokfp.modeling.evaluation import metric_value

    gated, refit = read_holdout(model_path), read_holdout(package, REFIT_OOF_FILE)
    if gated is None:
        raise ValueError(f"the gated package {model_path} kept no out-of-fold predictions")
    if refit is None or len(refit.positions) != labelled or not np.array_equal(
            refit.positions, np.arange(labelled)):
        raise ValueError(
            f"the refit kept no out-of-fold predictions of its {labelled} rows to judge it by "
            f"({REFIT_OOF_FILE}: {'missing' if refit is None else len(refit.positions)})")
    positions, gate_scores, truth = gated.served(meta)
    _, refit_scores, _ = refit.served(meta)
    refit_scores = refit_scores[positions]
    metric, task = str(meta["primary_metric"]), str(meta["task"])
    if task == "regression":
        codes = truth.astype("float64")
    else:
        keep = truth >= 0
        codes = truth[keep].astype("int64")

        def probabilities(scores: Any) -> Any:  # as scored_probabilities scores them
            probs = np.clip(np.asarray(scores, dtype="float64")[keep], 1e-15, 1.0)
            return probs / probs.sum(axis=1, keepdims=True)

        gate_scores, refit_scores = probabilities(gate_scores), probabilities(refit_scores)
    rule = holdout_rule(metric, task, codes, gate_scores, refit_scores,
                        cfg.training.refit_score_tolerance, cfg.training.refit_loss_tolerance,
                        cfg.selection.confidence, cfg.selection.bootstrap_samples, cfg.split.seed)
    gate = metric_value(metric, codes, gate_scores, task)
    value = metric_value(metric, codes, refit_scores, task)
    detail = (f"{metric} out of fold on the {len(codes)} training rows (the refit's fold "
              f"models on every labelled row, the gated model's on the training rows; neither "
              f"scored a row its models saw): refit {value:.4f}, gated model {gate:.4f}; "
              f"{rule['detail']}")
    return {"metric": metric, "rows": int(len(codes)), "gate": {metric: gate},
            "refit": {metric: value}, "basis": "out_of_fold",
            "passed": bool(rule["passed"] and value == value), "rule": rule, "detail": detail}


def _drop_refit_out_of_fold(package: Path) -> None:
    """The refit's own out-of-fold predictions (judged already) out of the package to serve:
    they are of its rows, not the training file's (``holdout.npz``'s), and nothing reads
    them later."""
    from autokfp.modeling.estimate import REFIT_OOF_FILE

    Path(package, "artifacts", "engine", REFIT_OOF_FILE).unlink(missing_ok=True)


def _served_fairness(cfg: RunConfig, package: str, train_path: str, test_path: str,
                     meta: dict[str, Any]) -> dict[str, Any] | None:
    """The fairness check of the model to serve, as far as it can be made out of sample: the
    recipe fitted on the training rows (``package``), its decisions on the test rows with
    the gated package's mitigation applied (as serving applies it; no new mitigation is
    fitted), against the policy. The refit is rejected when it breaks a limit the gated
    model met (``pass`` or ``mitigated``). None for a model without sensitive columns or
    not a binary classifier (nothing was checked at the gate either)."""
    import pandas as pd

    from autokfp.governance.fairness import FAIL, assess_fairness
    from autokfp.modeling.model_package import load_model_package
    from autokfp.steps.bias_check import MITIGATION_FIT_ROWS
    from autokfp.steps.io import read_parquet_sample

    gated = meta.get("fairness") or {}
    columns = list(gated.get("sensitive_columns") or [])
    if meta.get("task") != "binary" or not columns:
        return None
    target = meta["target"]
    model = load_model_package(package)
    test = pd.read_parquet(test_path)
    train, _rows = read_parquet_sample(train_path, MITIGATION_FIT_ROWS, seed=cfg.split.seed)
    spec = cfg.governance.model_copy(update={"mitigate": False})
    report, _ = assess_fairness(test, model.predict(test.drop(columns=[target])), meta, columns,
                                "the gated model's sensitive columns", spec, fit=train,
                                fit_predictions=model.predict(train.drop(columns=[target])))
    rejected = report["verdict"] == FAIL and gated.get("verdict") != FAIL
    why = str(report["verdict_reason"]).replace(" and mitigation is off", "")
    detail = (f"fairness of the recipe fitted on the training rows, with the gated model's "
              f"mitigation applied, on the {len(test)} test rows: {report['verdict']} ({why}); "
              f"the gated model: {gated.get('verdict', 'unknown')}")
    return {"verdict": report["verdict"], "gate_verdict": gated.get("verdict"),
            "rejected": rejected, "rows": len(test), "columns": columns,
            "before": report.get("before"), "detail": detail}


def _figures(prefix: str, check: dict[str, Any]) -> dict[str, float]:
    metric = check["metric"]
    figures = {f"{prefix}_{metric}_gate": check["gate"][metric],
               f"{prefix}_{metric}_refit": check["refit"][metric]}
    if check.get("rule"):  # the held-out rule: the shortfall, its se and the margin
        figures.update({f"{prefix}_{key}": float(check["rule"][key])
                        for key in ("shortfall", "se", "margin", "probability_beyond")})
    return figures


def refit_engines(config: dict[str, Any], engine: str, model_path: str,
                  fits: list[dict[str, str]],
                  holdout: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """(in a child process) ``refit_engine`` for each of ``fits`` (``rows_path``,
    ``engine_dir``, ``package``) in turn, with one engine (an H2O refit session: one cluster
    for all), each fit's package assembled at its ``package`` (``_assemble``). Per fit
    ``{"summary"}``, or ``{"error", "error_type"}`` when it raised; once one has, the fits
    after it are not run (the step would not use them), their error says so. With
    ``holdout`` (``holdout_check``'s arguments but the package), the first fit's package is
    checked before the next fit starts (``{"summary", "check"}``): a rejected recipe is not
    fitted again (the step serves the gated model then)."""
    from autokfp.config import parse_training_settings
    from autokfp.engine_registry import engine_for_run

    cfg = parse_training_settings(config, origin="refit settings")
    trainer = engine_for_run(engine, cfg)
    session = getattr(trainer, "refit_session", None)
    outcomes: list[dict[str, Any]] = []
    skipped = {"error": "not run: the fit before it failed", "error_type": "EngineFailure"}
    with session(cfg.budget) if session is not None else contextlib.nullcontext():
        for fit in fits:
            try:
                outcome: dict[str, Any] = {"summary": refit_engine(
                    config, engine, model_path, fit["rows_path"], fit["engine_dir"],
                    trainer=trainer)}
                _assemble(model_path, Path(fit["engine_dir"]), Path(fit["package"]))
                if holdout is not None and not outcomes:
                    outcome["check"] = holdout_check(package=fit["package"], **holdout)
            except Exception as exc:  # noqa: BLE001 - reported per fit, as its child would
                log.warning("the refit on %s failed", fit["rows_path"], exc_info=True)
                outcomes.append({"error": f"{type(exc).__name__}: {exc}",
                                 "error_type": type(exc).__name__})
                break
            outcomes.append(outcome)
            if outcome.get("check", {}).get("rejected"):
                skipped = {"error": "not run: the refit on the training rows was rejected",
                           "error_type": "EngineFailure"}
                break
    return outcomes + [skipped] * (len(fits) - len(outcomes))


def refit_engine(config: dict[str, Any], engine: str, model_path: str, rows_path: str,
                 engine_dir: str, trainer: Any = None) -> dict[str, Any]:
    """(in a child process) ``engine``'s ``refit`` of the package at ``model_path`` on the
    labelled rows of ``rows_path``, with the package's own feature plan; the engine's files
    go to ``engine_dir``. Returns its leader, parameters, rows and seconds. ``trainer``: the
    engine to refit with (default: one made from ``config``)."""
    from autokfp.config import parse_training_settings
    from autokfp.engine_registry import engine_for_run
    from autokfp.modeling.features import FeaturePlan
    from autokfp.steps.train_model import _training_rows

    cfg = parse_training_settings(config, origin="refit settings")
    package = Path(model_path, "artifacts")
    plan = FeaturePlan.from_json((package / "plan.json").read_text())
    meta = json.loads((package / "meta.json").read_text())
    trainer = trainer if trainer is not None else engine_for_run(engine, cfg)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autokfp-refit-rows-") as workdir:
        features, target, _example, total = _training_rows(trainer, rows_path, plan,
                                                           Path(workdir), cfg.budget.seed)
        result = trainer.refit(package / "engine", features, target, plan.task,
                               meta.get("class_labels"), plan.categorical_features, cfg.budget,
                               str(meta["primary_metric"]), Path(engine_dir))
    return {"leader": result.leader, "params": result.params, "rows": total,
            "test_rows": total - int(meta.get("trained_rows") or total),
            "fitted_rows": int(result.fitted_rows or len(target)),
            "seconds": round(time.monotonic() - started, 1)}


def _members_note(params: dict[str, Any]) -> str:
    """What the reason says when the engine refitted only some of a stacked ensemble's base
    models (H2O: those its metalearner weights, ``h2o_automl.weighted_members``), so the
    model card and the ``model.refit`` audit event carry it; "" otherwise."""
    members = params.get("refit_base_models")
    return f"; base models refitted: {members}" if members else ""


def _compare(gate_path: str, refit_path: str, rows_path: str, meta: dict[str, Any],
             score_tolerance: float, loss_tolerance: float, where: str,
             paired: tuple[float, int, int] | None = None) -> dict[str, Any]:
    """Both packages (loaded as serving loads them: feature plan, calibration, fairness
    mitigation and threshold included) scored on the rows of ``rows_path``. With ``paired``
    (confidence, bootstrap samples, seed): ``holdout_rule`` decides (rows neither model saw);
    without it the refit must simply not be worse there than the tolerance (every labelled
    row, which the refit has seen: only a fit that broke falls outside)."""

    from autokfp.modeling.evaluation import (
        GREATER_IS_BETTER,
        compute_metrics,
        encode_labels,
        scored_probabilities,
    )
    from autokfp.modeling.feature_file import TestRows
    from autokfp.modeling.model_package import load_model_package

    metric = meta["primary_metric"]
    rows = TestRows(path=rows_path)
    truth = rows.column(meta["target"])
    scores, predicted = {}, {}
    for who, path in (("gate", gate_path), ("refit", refit_path)):
        model = load_model_package(path)
        predicted[who] = rows.predict(model.predict, meta["target"])
        scores[who] = {metric: float(compute_metrics(truth, predicted[who], meta)[metric])}
    gate, refit = scores["gate"][metric], scores["refit"][metric]
    found = {"metric": metric, "rows": len(truth), "gate": scores["gate"],
             "refit": scores["refit"]}
    if paired is not None:
        confidence, samples, seed = paired
        if meta["task"] == "regression":
            codes = truth.astype("float64").to_numpy()
            arrays = [predicted[who]["prediction"].to_numpy(dtype="float64")
                      for who in ("gate", "refit")]
        else:
            codes = encode_labels(truth, meta)
            keep = codes >= 0
            codes = codes[keep]
            # as compute_metrics scores them (the figures above)
            arrays = [scored_probabilities(predicted[who], meta, keep)
                      for who in ("gate", "refit")]
        rule = holdout_rule(metric, meta["task"], codes, arrays[0], arrays[1], score_tolerance,
                            loss_tolerance, confidence, samples, seed)
        detail = (f"{metric} on {where}, {len(truth)} rows: refit {refit:.4f}, gated model "
                  f"{gate:.4f}; {rule['detail']}")
        return {**found, "passed": bool(rule["passed"] and refit == refit), "rule": rule,
                "detail": detail}
    if GREATER_IS_BETTER[metric]:
        passed = refit >= gate - score_tolerance
        allowed = f"at least {gate - score_tolerance:.4f} (gated − {score_tolerance:g})"
    else:
        passed = refit <= gate * (1 + loss_tolerance) + 1e-9
        allowed = f"at most {gate * (1 + loss_tolerance):.4f} (gated + {loss_tolerance:.0%})"
    passed = passed and refit == refit
    detail = (f"{metric} on {where}, {len(truth)} rows: refit {refit:.4f}, gated model "
              f"{gate:.4f} (the refit must reach {allowed})")
    return {**found, "passed": bool(passed), "detail": detail}


def holdout_rule(metric: str, task: str, truth: Any, gate_scores: Any, refit_scores: Any,
                 score_tolerance: float = HOLDOUT_SCORE_TOLERANCE,
                 loss_tolerance: float = HOLDOUT_LOSS_TOLERANCE,
                 confidence: float = HOLDOUT_CONFIDENCE, samples: int = HOLDOUT_SAMPLES,
                 seed: int = 0) -> dict[str, Any]:
    """Is the refit worse than the gated model on the same rows beyond what they resolve?

    ``truth``: class codes or values; the scores as ``evaluation.metric_value`` takes them.
    The refit's shortfall is the gated model's metric less the refit's (points of
    auc/accuracy/f1/r2), or the refit's loss above the gated model's as a share of it
    (logloss/rmse/mae). It is bootstrapped, paired (both models on each resample of the same
    rows), and the refit is rejected when P(shortfall > margin) >= ``confidence``, the margin
    being the shortfall's standard error (the bootstrap's sd) kept between a tenth of the
    tolerance and the tolerance: a shortfall within the rows' noise passes, a resolved one
    larger than the tolerance or than one se is rejected. On 400 rows an AUC's se is ~0.02, so a good refit is no
    longer rejected for a draw 0.022 below; on 50,000 rows a real 0.01 below is."""
    import numpy as np

    from autokfp.modeling.bootstrap import bootstrap_values
    from autokfp.modeling.evaluation import GREATER_IS_BETTER, metric_value

    higher = GREATER_IS_BETTER[metric]
    tolerance = score_tolerance if higher else loss_tolerance

    def shortfall(gate: float, refit: float) -> float:
        if higher:
            return gate - refit
        return (refit - gate) / abs(gate) if gate else (0.0 if refit == gate else np.inf)

    gate = metric_value(metric, truth, gate_scores, task)
    refit = metric_value(metric, truth, refit_scores, task)
    observed = float(shortfall(gate, refit))
    pairs = bootstrap_values(metric, truth, (gate_scores, refit_scores), task, samples, seed,
                             skip_errors=True)
    drawn = np.array([shortfall(g, r) for g, r in pairs], dtype="float64")
    se = float(np.std(drawn, ddof=1)) if len(drawn) > 1 else float("inf")
    # at most the tolerance, at least a tenth of it (0.002 AUC, 1% of a loss: differences no
    # one would act on, which a near-exact reproduction's se, ~0, would otherwise flag)
    margin = float(min(tolerance, max(se, tolerance * NEGLIGIBLE_SHARE)))
    beyond = float(np.mean(drawn > margin)) if len(drawn) else 1.0
    if observed != observed:  # a refit whose metric is NaN never passes
        beyond = 1.0
    passed = beyond < confidence
    unit = "points" if higher else "of the gated model's " + metric
    rule = (f"rejected when P(shortfall > margin) >= {confidence:g}, margin = the se between "
            f"{tolerance * NEGLIGIBLE_SHARE:g} and the tolerance {tolerance:g}")
    detail = (f"the refit's shortfall {observed:+.4f} {unit} (paired bootstrap se "
              f"{se:.4f}, {len(drawn)} samples), margin {margin:.4f}, P(shortfall > margin) "
              f"{beyond:.2f}: {'passes' if passed else 'rejected'} ({rule})")
    return {"passed": bool(passed), "shortfall": observed, "se": se, "margin": margin,
            "probability_beyond": beyond, "confidence": float(confidence),
            "tolerance": float(tolerance), "samples": int(len(drawn)), "rule": rule,
            "detail": detail}


def _rows_in(path: str) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _concat_parquet(paths: list[str], out: Path) -> int:
    """The rows of ``paths`` (same columns) into one Parquet file, batch by batch: how many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(paths[0]).schema_arrow
    total = 0
    with pq.ParquetWriter(str(out), schema) as writer:
        for path in paths:
            # read without Arrow's thread pool: a process that ran it forks no children
            # (lifeline.start_child), and the refit's child is started next
            for batch in pq.ParquetFile(path).iter_batches(batch_size=131_072,
                                                           use_threads=False):
                writer.write_table(pa.Table.from_batches([batch]).select(schema.names)
                                   .cast(schema))
                total += batch.num_rows
    return total


def _engine_folder_of(model_path: str) -> Any:
    """A ``copytree`` ignore that leaves out the package's ``artifacts/engine`` only."""
    artifacts = Path(model_path, "artifacts").resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {"engine"} if Path(folder).resolve() == artifacts and "engine" in names else set()

    return ignore


def _gate_dir() -> str:
    from autokfp.modeling.model_package import GATE_MODEL_DIR

    return GATE_MODEL_DIR


def _staging(out_model_path: str) -> Path:
    out = Path(out_model_path)
    staging = out.parent / f".{out.name}.refit"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    return staging


def _publish(staging: Path, out_model_path: str) -> None:
    """``staging`` becomes ``out_model_path`` whole (never half a package there)."""
    from autokfp.storage.local import replace_dir

    replace_dir(staging, Path(out_model_path))
