"""Choosing the model to register: every candidate and the champion on the same test rows.

Each engine's training task hands over a model folder, or a ``candidate.json`` marker when
the engine failed or was not enabled. Selection loads every usable candidate through the
same pyfunc that will serve it and scores it on the fixed held-out rows; runs the
validation checks (calibration, robustness, CV spread) on each; disqualifies a candidate
that cannot score rows with unseen categories or missing values; and ranks the rest by the
primary metric. The best candidate is then compared with the current champion by the
paired bootstrap of ``evaluation.compare_to_champion``. Candidates that did not win are
recorded (metrics, reasons, pairwise bootstrap against the winner) and their model folders
are logged in the evaluation's MLflow run; only the winner is registered.

If every candidate failed there is nothing to register: selection raises TrainingError
naming each engine's reason.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp.errors import TrainingError
from autokfp.modeling.estimate import HONEST_KINDS, metric_with_interval, pool_rows, read_holdout
from autokfp.modeling.evaluation import (
    classification_details,
    compare_to_champion,
    compute_metrics,
    rank_key,
)
from autokfp.modeling.feature_file import TestRows
from autokfp.training.isolation import read_candidate_marker

log = logging.getLogger(__name__)

TRAINED, FAILED, SKIPPED, MISSING, DISQUALIFIED = (
    "trained", "failed", "skipped", "missing", "disqualified")


@dataclass
class Candidate:
    """One engine's leader (or why there is none)."""

    engine: str
    path: str
    status: str = TRAINED
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    predictions: pd.DataFrame | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    robustness: dict[str, Any] = field(default_factory=dict)
    cv: dict[str, Any] = field(default_factory=dict)
    versus_selected: dict[str, Any] | None = None
    score_seconds: float = 0.0
    # the selection estimate: the metric on the pooled out-of-sample + test rows, with its
    # 90% interval (``estimate.metric_with_interval``) and where the rows came from
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.status == TRAINED

    def row(self, metric: str) -> dict[str, Any]:
        """The leaderboard row (JSON-safe)."""
        params = self.meta.get("params") or {}
        row: dict[str, Any] = {
            "engine": self.engine, "status": self.status, "reason": self.reason,
            "leader": self.meta.get("leader"), "device": self.meta.get("device"),
            f"test_{metric}": self.metrics.get(metric),
            f"estimate_{metric}": self.estimate.get("value"),
            "estimate_ci_low": self.estimate.get("ci_low"),
            "estimate_ci_high": self.estimate.get("ci_high"),
            "estimate_rows": self.estimate.get("rows"),
            "cv_mean": self.cv.get("mean"), "cv_sd": self.cv.get("sd"),
            "cv_method": self.cv.get("method"),
            "models_trained": params.get("models_trained"),
            "train_seconds": self.meta.get("train_seconds"),
        }
        for name, value in self.metrics.items():
            row.setdefault(f"test_{name}", value)
        if self.calibration:
            row["brier"] = self.calibration["brier"]
            row["ece"] = self.calibration["ece"]
        if self.robustness:
            row["robustness_passed"] = self.robustness.get("passed")
        if self.versus_selected:
            row["p_better_than_selected"] = self.versus_selected.get("probability_better")
        return row


@dataclass
class Selection:
    """The outcome: who won, against what, and the evidence."""

    metric: str
    candidates: list[Candidate]
    selected: Candidate
    comparison: dict[str, Any]
    champion: dict[str, Any] | None
    reason: str
    champion_predictions: pd.DataFrame | None = None
    # set when the selected candidate failed the gate and a tied one passed it instead
    gate_fallback: dict[str, Any] | None = None

    def leaderboard(self) -> pd.DataFrame:
        rows = [c.row(self.metric) for c in self.candidates]
        board = pd.DataFrame(rows)
        board["selected"] = board["engine"] == self.selected.engine
        return board


def load_candidates(paths: dict[str, str]) -> list[Candidate]:
    """Read each engine's output folder: a model package, a marker, or nothing at all."""
    candidates = []
    for engine, path in paths.items():
        folder = Path(path) if path else None
        if folder is None or not folder.exists():
            candidates.append(Candidate(engine, str(path), MISSING,
                                        "the training task produced no output"))
            continue
        marker = read_candidate_marker(folder)
        if marker is not None:
            candidates.append(Candidate(engine, str(folder), marker.get("status", FAILED),
                                        marker.get("reason", "no reason recorded")))
            continue
        meta_path = folder / "artifacts" / "meta.json"
        if not (folder / "MLmodel").is_file() or not meta_path.is_file():
            candidates.append(Candidate(engine, str(folder), FAILED,
                                        f"{folder} is not a complete model package"))
            continue
        candidates.append(Candidate(engine, str(folder), meta=json.loads(meta_path.read_text())))
    return candidates


def select_model(candidates: list[Candidate], test: pd.DataFrame | TestRows, selection_spec: Any,
                 seed: int, champion: Any = None, champion_version: str | None = None,
                 robustness_rows: int = 200) -> Selection:
    """Score, validate and rank the candidates; compare the best with ``champion`` (a pyfunc).

    ``test`` is a frame, or ``TestRows`` of a Parquet file: then only the target column is
    held whole, and every model scores the rows batch by batch."""
    # every scoring call would warn that the test rows carry columns the model ignores
    quiet = logging.getLogger("mlflow.models.utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _select(candidates, test, selection_spec, seed, champion, champion_version,
                       robustness_rows)
    finally:
        quiet.setLevel(level)


def _select(candidates: list[Candidate], test: pd.DataFrame | TestRows, selection_spec: Any,
            seed: int,
            champion: Any, champion_version: str | None, robustness_rows: int) -> Selection:
    usable = [c for c in candidates if c.usable]
    if not usable:
        reasons = "; ".join(f"{c.engine}: {c.status} ({c.reason})" for c in candidates)
        raise TrainingError(f"no candidate model to evaluate: {reasons or 'no engine ran'}; "
                            "see each training step's log")
    reference = usable[0].meta
    target = reference["target"]
    if target not in test.columns:
        raise TrainingError(f"the test rows lack the target column '{target}'")
    inputs = test if isinstance(test, TestRows) else TestRows(frame=test)
    truth = inputs.column(target)
    metric = reference["primary_metric"]
    for candidate in usable:
        same = (candidate.meta.get("task"), candidate.meta.get("class_labels"),
                candidate.meta.get("primary_metric"))
        if same != (reference.get("task"), reference.get("class_labels"), metric):
            candidate.status, candidate.reason = DISQUALIFIED, (
                f"trained for another task or classes {same} than {usable[0].engine}")
            continue
        _score_candidate(candidate, truth, inputs, metric, seed, robustness_rows)
    contenders = [c for c in candidates if c.usable]
    if not contenders:
        reasons = "; ".join(f"{c.engine}: {c.status} ({c.reason})" for c in candidates)
        raise TrainingError(f"every candidate model was ruled out: {reasons}")
    # the most reliable estimate: every row each candidate scored out of sample (their
    # common out-of-fold / validation rows) plus the test rows; the test rows alone when a
    # candidate kept none
    # each candidate's out-of-sample file read once: its kind and its rows
    stored = {c.engine: read_holdout(c.path) for c in contenders}
    pooled = pool_rows(contenders, truth, reference, stored)
    rows_truth = pooled.truth if pooled else truth
    kinds = {engine: (found.kind if found is not None else None)
             for engine, found in stored.items()}
    source = _estimate_source(kinds, pooled is not None)
    for candidate in contenders:
        candidate.estimate = metric_with_interval(rows_truth, _pooled(candidate, pooled),
                                                  candidate.meta, metric, seed=seed)
        candidate.estimate.update({
            "holdout_rows": pooled.holdout_rows if pooled else 0, "test_rows": len(truth),
            "source": source, "out_of_sample": kinds[candidate.engine] or "none"})
    ranked = sorted(contenders, key=lambda c: rank_key(metric, c.estimate["value"]))
    best = ranked[0]
    _compare_with_selected(ranked, best, rows_truth, pooled, metric, selection_spec, seed)
    tie_note = ""
    if len(ranked) > 1 and best.meta["task"] != "regression" and metric != "logloss":
        best, tie_note = _break_tie(ranked, best, rows_truth, pooled, metric, selection_spec,
                                    seed)
    others = [c for c in candidates if c is not best]
    reason = _selection_reason(best, others, metric) + tie_note

    champion_predictions, champion_info, note = _score_champion(champion, champion_version,
                                                                best, truth, inputs)
    # a package chosen as a gate fallback (below) by select-model keeps its stricter gate
    # when evaluate-model judges it again after the bias check
    confidence = max(selection_spec.confidence,
                     float((best.meta.get("gate_fallback") or {}).get("confidence", 0.0)))
    comparison = compare_to_champion(
        truth, best.predictions, champion_predictions, best.meta, metric,
        selection_spec.min_improvement, confidence,
        selection_spec.bootstrap_samples, seed=seed,
        champion_version=champion_version, baseline_margin=selection_spec.baseline_margin)
    fallback: dict[str, Any] | None = None
    if not comparison.promote and len(ranked) > 1:
        found = _gate_fallback(ranked, best, truth, champion_predictions, metric,
                               selection_spec, seed, champion_version, comparison)
        if found is not None:
            best, comparison, fallback = found
            reason += f"; {fallback['reason']}"
    elif best.meta.get("gate_fallback"):
        comparison.reason = (f"{comparison.reason} (at confidence {confidence}: "
                             f"{best.meta['gate_fallback']['reason']})")
    if note:
        comparison.reason = f"{note}; {comparison.reason}"
    comparison.extra["selected_engine"] = best.engine
    if fallback is not None:
        comparison.extra["gate_fallback"] = fallback
    return Selection(metric=metric, candidates=candidates, selected=best,
                     comparison=comparison.to_dict(), champion=champion_info, reason=reason,
                     champion_predictions=champion_predictions, gate_fallback=fallback)


def fallback_confidence(confidence: float, fallbacks: int) -> float:
    """The confidence a gate fallback must reach: the error the gate allows (1 − confidence)
    halved, and shared by the ``fallbacks`` candidates that get a second look."""
    return 1.0 - (1.0 - confidence) / (2.0 * max(1, fallbacks))


def _gate_fallback(ranked: list[Candidate], best: Candidate, truth: pd.Series,
                   champion_predictions: pd.DataFrame | None, metric: str, selection_spec: Any,
                   seed: int, champion_version: str | None, failed: Any
                   ) -> tuple[Candidate, Any, dict[str, Any]] | None:
    """When the selected candidate fails the gate (the trivial baseline on a first run, the
    champion later), the first candidate that selection could not tell from it and that
    passes the same gate at a stricter confidence; None when there is none.

    Why this is sound where re-ranking on the held-out rows would not be: the gate is the one
    measurement on rows no candidate saw or was chosen on, and only its failure opens the
    fallback, so an outcome where the selected candidate passes never changes. A candidate
    is eligible only if selection's pooled evidence did not find it worse (its P(better than
    the selected) >= 1 − confidence: a tie); one found worse beyond noise on the far more
    numerous pooled rows is not promoted on the strength of a few dozen held-out rows. The
    second look at the same rows is a second test, so it pays for it: the eligible
    candidates share half the error the gate allows (``fallback_confidence``: 0.95 for one
    fallback at the default 0.9), and the chance that some candidate without a real edge is
    promoted stays at most 1.5 times the gate's own.
    """
    tied = [c for c in ranked if c is not best and c.usable and c.predictions is not None
            and (c.versus_selected or {}).get("probability_better", 0.0)
            >= 1.0 - selection_spec.confidence]
    if not tied:
        return None
    confidence = fallback_confidence(selection_spec.confidence, len(tied))
    for other in tied:
        comparison = compare_to_champion(
            truth, other.predictions, champion_predictions, other.meta, metric,
            selection_spec.min_improvement, confidence, selection_spec.bootstrap_samples,
            seed=seed, champion_version=champion_version,
            baseline_margin=selection_spec.baseline_margin)
        if not comparison.promote:
            log.info("gate fallback: %s does not pass the gate either: %s", other.engine,
                     comparison.reason)
            continue
        against = ("the trivial baseline" if champion_predictions is None
                   else f"champion v{champion_version}")
        tie = other.versus_selected or {}
        p_tie = float(tie.get("probability_better", 0.0))
        text = (f"gate fallback: the selected {best.engine} does not pass the gate against "
                f"{against} on the held-out rows ({metric} {failed.challenger:.4f}, P "
                f"{failed.probability_better:.2f}); {other.engine}, which selection could not "
                f"tell from it (P(better than {best.engine}) {p_tie:.2f} on the pooled rows), "
                f"passes it at the stricter confidence {confidence:.3f} ({metric} "
                f"{comparison.challenger:.4f}, P {comparison.probability_better:.2f}) and is "
                "promoted instead")
        log.warning("%s", text)
        comparison.reason = f"{text}; {comparison.reason}"
        # the leaderboard's pairwise figures, now against the promoted candidate: the same
        # bootstrap mirrored
        improvement = tie.get("improvement")
        best.versus_selected = {
            "probability_better": 1.0 - p_tie,
            "improvement": None if improvement is None else -float(improvement),
            "ci_low": None if tie.get("ci_high") is None else -float(tie["ci_high"]),
            "ci_high": None if tie.get("ci_low") is None else -float(tie["ci_low"])}
        other.versus_selected = None
        return other, comparison, {
            "from_engine": best.engine, "engine": other.engine, "against": against,
            "confidence": confidence, "tied_probability_better": p_tie,
            "failed_value": failed.challenger, "failed_probability": failed.probability_better,
            "failed_reason": failed.reason, "value": comparison.challenger,
            "probability": comparison.probability_better, "reason": text}
    return None


def _score_candidate(candidate: Candidate, truth: pd.Series, inputs: TestRows, metric: str,
                     seed: int, robustness_rows: int) -> None:
    """Load and score ``candidate`` on the test rows: its metrics, calibration, CV spread and
    robustness; a model that cannot score or fails robustness is disqualified."""
    from autokfp.modeling.features import FeaturePlan
    from autokfp.modeling.model_package import load_model_package
    from autokfp.modeling.validation import calibration_report, cv_summary, robustness_report

    started = time.monotonic()
    try:
        candidate.model = load_model_package(candidate.path)
        candidate.predictions = inputs.predict(candidate.model.predict, str(truth.name))
    except Exception as exc:  # noqa: BLE001 - a model that cannot score is out, not fatal
        candidate.status = DISQUALIFIED
        candidate.reason = f"cannot score the test rows: {type(exc).__name__}: {exc}"[:800]
        log.warning("%s: %s", candidate.engine, candidate.reason)
        return
    candidate.metrics = compute_metrics(truth, candidate.predictions, candidate.meta)
    if candidate.meta["task"] != "regression":
        candidate.details = classification_details(truth, candidate.predictions, candidate.meta)
        candidate.calibration = calibration_report(truth, candidate.predictions, candidate.meta)
    candidate.cv = cv_summary(candidate.meta, candidate.metrics.get(metric))
    plan = FeaturePlan.from_json(Path(candidate.path, "artifacts", "plan.json").read_text())
    report = robustness_report(candidate.model,
                               inputs.sample(robustness_rows, seed, without=str(truth.name)),
                               plan, candidate.meta, seed=seed, rows=robustness_rows, drawn=True)
    candidate.robustness = report.to_dict()
    candidate.score_seconds = round(time.monotonic() - started, 2)
    if report.disqualified:
        candidate.status = DISQUALIFIED
        candidate.reason = "fails robustness: " + "; ".join(report.disqualified)
        log.warning("%s disqualified: %s", candidate.engine, candidate.reason)


def _estimate_source(kinds: dict[str, str | None], pooled: bool) -> str:
    """Which rows the candidates are compared on, and what each engine's out-of-sample rows
    are (``estimate.StoredHoldout.kind``): why training rows were pooled or not."""
    named = ", ".join(f"{engine}: {(kind or 'none').replace('_', ' ')}"
                      for engine, kind in kinds.items())
    if pooled:
        return ("out-of-sample training rows common to every candidate + test rows "
                f"(out of fold for each engine: {named})")
    optimistic = [e for e, k in kinds.items() if k is not None and k not in HONEST_KINDS]
    if optimistic:
        return (f"test rows (the training rows {', '.join(optimistic)} scored also chose "
                f"its model, so they are not pooled: {named})")
    return "test rows"  # a candidate kept no out-of-sample rows


def _pooled(candidate: Candidate, pooled: Any) -> pd.DataFrame:
    """The candidate's predictions of the rows selection compares on (pooled or test rows)."""
    return pooled.predictions[candidate.engine] if pooled else candidate.predictions


def _compare_with_selected(ranked: list[Candidate], best: Candidate, rows_truth: pd.Series,
                           pooled: Any, metric: str, selection_spec: Any, seed: int) -> None:
    """Each other ranked candidate's paired bootstrap against ``best`` (``versus_selected``)."""
    for other in ranked:
        if other is best:
            continue
        versus = compare_to_champion(
            rows_truth, _pooled(other, pooled), _pooled(best, pooled), best.meta, metric,
            0.0, selection_spec.confidence, min(200, selection_spec.bootstrap_samples), seed=seed)
        other.versus_selected = {"probability_better": versus.probability_better,
                                 "improvement": versus.improvement,
                                 "ci_low": versus.ci_low, "ci_high": versus.ci_high}


def _break_tie(ranked: list[Candidate], best: Candidate, rows_truth: pd.Series, pooled: Any,
               metric: str, selection_spec: Any, seed: int) -> tuple[Candidate, str]:
    """A tie (the runner-up is not worse beyond noise) goes to the better-calibrated model:
    the selected candidate, and a note when the tie changed it."""
    tied = [c for c in ranked[1:] if (c.versus_selected or {}).get("probability_better", 0.0)
            >= 1.0 - selection_spec.confidence]
    losses = {c.engine: metric_with_interval(
        rows_truth, _pooled(c, pooled), c.meta, "logloss", samples=0)["value"]
        for c in [best, *tied]}
    calibrated = min([best, *tied], key=lambda c: losses[c.engine])
    if calibrated is best:
        return best, ""
    tie_note = (f"; {calibrated.engine} and {best.engine} tie on {metric} "
                f"(P({calibrated.engine} better) "
                f"{calibrated.versus_selected['probability_better']:.2f}), and "
                f"{calibrated.engine} is better calibrated (log loss "
                f"{losses[calibrated.engine]:.4f} vs {losses[best.engine]:.4f})")
    previous = best
    best = calibrated
    _compare_with_selected(ranked, best, rows_truth, pooled, metric, selection_spec, seed)
    best.versus_selected = None
    log.info("tie on %s between %s and %s: the better-calibrated %s is selected", metric,
             previous.engine, best.engine, best.engine)
    return best, tie_note


def _score_champion(champion: Any, champion_version: str | None, best: Candidate,
                    truth: pd.Series, inputs: TestRows
                    ) -> tuple[pd.DataFrame | None, dict[str, Any] | None, str | None]:
    """The champion's predictions of the test rows and its metrics; or, when it cannot score
    them (or predicts other classes), None and why (it is then replaced)."""
    if champion is None:
        return None, None, None
    try:
        champion_predictions = inputs.predict(champion.predict, str(truth.name))
        missing = [f"probability_{c}" for c in (best.meta.get("class_labels") or [])
                   if f"probability_{c}" not in champion_predictions.columns]
        if missing:
            raise ValueError(f"the champion predicts other classes (lacks {missing})")
        return champion_predictions, {"version": champion_version,
                                      "metrics": compute_metrics(truth, champion_predictions,
                                                                 best.meta)}, None
    except Exception as exc:  # noqa: BLE001 - an unusable champion must not block a new model
        note = (f"champion v{champion_version} cannot score the current data ({exc}); "
                "it is replaced by a model that can")
        log.warning(note)
        return None, None, note


def _selection_reason(best: Candidate, others: list[Candidate], metric: str) -> str:
    estimate = best.estimate
    parts = [f"{best.engine} has the best {metric} ({estimate['value']:.4f}) on "
             f"{estimate['rows']} rows ({estimate['source']}; test rows alone "
             f"{best.metrics.get(metric, float('nan')):.4f})"]
    for other in others:
        if other.usable:
            versus = other.versus_selected or {}
            p = versus.get("probability_better")
            parts.append(f"{other.engine} {other.estimate.get('value', float('nan')):.4f}"
                         + (f" (P(better than {best.engine}) {p:.2f})" if p is not None else ""))
        else:
            parts.append(f"{other.engine} {other.status}: {other.reason}")
    text = "; ".join(parts)
    if any(not o.usable for o in others):
        text += " (fallback: the remaining engine's leader competes alone)"
    return text


def evaluation_document(selection: Selection, test_rows: int) -> dict[str, Any]:
    """The evaluation JSON: the winner's figures where a single-model evaluation had them,
    plus every candidate, the champion and the validation reports."""
    best = selection.selected
    metrics = dict(best.metrics)
    if best.calibration:
        metrics["brier"] = best.calibration["brier"]
        metrics["ece"] = best.calibration["ece"]
    return {
        "metrics": metrics,
        "comparison": selection.comparison,
        "details": best.details,
        "task": best.meta["task"],
        "primary_metric": selection.metric,
        "engine": best.engine,
        "test_rows": test_rows,
        "selected": {"engine": best.engine, "path": best.path, "reason": selection.reason},
        # the honest estimate: out-of-sample training rows + test rows, with its interval,
        # next to the test-rows-only figures in "metrics"
        "estimate": {"metric": selection.metric, **best.estimate},
        "candidates": [_json_safe(c.row(selection.metric)) for c in selection.candidates],
        "validation": {
            c.engine: {"cv": c.cv, "calibration": c.calibration, "robustness": c.robustness}
            for c in selection.candidates if c.metrics
        },
        "champion": selection.champion,
    }


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    safe = {}
    for key, value in row.items():
        if isinstance(value, (np.floating, float)):
            value = None if value != value else float(value)
        elif isinstance(value, np.integer):
            value = int(value)
        safe[key] = value
    return safe


def copy_selected(selection: Selection, model_path: str) -> None:
    """Put the winner's model folder at ``model_path`` (what the register step reads)."""
    target = Path(model_path)
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    shutil.copytree(selection.selected.path, target)
    if selection.gate_fallback is not None:
        # the package carries its stricter gate to evaluate-model (after the bias check),
        # and the reason to the model card
        meta_path = target / "artifacts" / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["gate_fallback"] = {key: selection.gate_fallback[key] for key in
                                 ("from_engine", "engine", "against", "confidence", "reason")}
        meta_path.write_text(json.dumps(meta, indent=2, default=str))


# ------------------------------------------------------------------------------- MLflow


def log_evaluation_run(model_name: str, selection: Selection, document: dict[str, Any],
                       plots: dict[str, Any], report_html: str | None = None) -> str | None:
    """One MLflow run per evaluation: leaderboard, plots, validation reports, losing models.

    Returns the run id, or None when MLflow could not be written (a warning, never a failed
    evaluation: the registered run still carries the evaluation JSON).
    """
    import tempfile

    import mlflow

    from autokfp.modeling import registry

    try:
        client = registry.configure()
        experiment = registry.experiment_id(client, model_name)
        with mlflow.start_run(experiment_id=experiment,
                              run_name=f"{model_name}-evaluation") as run:
            mlflow.set_tags({"autokfp.run_kind": "evaluation",
                             "autokfp.selected_engine": selection.selected.engine,
                             "autokfp.decision":
                                 str(document["comparison"].get("reason", ""))[:5000],
                             "autokfp.modeling.selection": selection.reason[:5000]})
            mlflow.log_params({"primary_metric": selection.metric,
                               "candidates": ",".join(c.engine for c in selection.candidates),
                               "selected_engine": selection.selected.engine,
                               "test_rows": document["test_rows"]})
            values: dict[str, float] = {}
            for candidate in selection.candidates:
                for name, value in candidate.metrics.items():
                    values[f"{candidate.engine}.test_{name}"] = value
                if candidate.calibration:
                    values[f"{candidate.engine}.brier"] = candidate.calibration["brier"]
                    values[f"{candidate.engine}.ece"] = candidate.calibration["ece"]
                if candidate.cv.get("sd") is not None:
                    values[f"{candidate.engine}.cv_{selection.metric}_sd"] = candidate.cv["sd"]
            for name, value in (document.get("champion") or {}).get("metrics", {}).items():
                values[f"champion.test_{name}"] = value
            mlflow.log_metrics({k: float(v) for k, v in values.items()
                                if v is not None and v == v and abs(float(v)) != float("inf")})
            board = selection.leaderboard()
            mlflow.log_table(board.astype(object).where(board.notna(), None),
                             artifact_file="leaderboard.json")
            with tempfile.TemporaryDirectory(prefix="autokfp-eval-") as scratch:
                csv = Path(scratch, "leaderboard.csv")
                board.to_csv(csv, index=False)
                mlflow.log_artifact(str(csv))
                evidence = Path(scratch, "evaluation.json")
                evidence.write_text(json.dumps(document, indent=2, default=str))
                mlflow.log_artifact(str(evidence))
                if report_html:
                    page = Path(scratch, "evaluation_report.html")
                    page.write_text(report_html)
                    mlflow.log_artifact(str(page))
            for path in plots.values():
                mlflow.log_artifact(str(path), artifact_path="plots")
            for candidate in selection.candidates:
                if candidate is not selection.selected and candidate.usable:
                    mlflow.log_artifacts(candidate.path,
                                         artifact_path=f"candidates/{candidate.engine}")
        return run.info.run_id
    except Exception as exc:  # noqa: BLE001 - tracking must not undo an evaluation
        log.warning("the evaluation could not be logged to MLflow: %s: %s", type(exc).__name__, exc)
        return None


# ---------------------------------------------------------------------------- HTML report


def report_html(document: dict[str, Any], plots: dict[str, Any]) -> str:
    """A self-contained page (plots inlined) for the Kubeflow UI."""
    import base64
    import html

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return html.escape("" if value is None else str(value))

    rows = document["candidates"]
    columns = ["engine", "status", f"test_{document['primary_metric']}", "cv_mean", "cv_sd",
               "brier", "ece", "robustness_passed", "p_better_than_selected", "train_seconds",
               "reason"]
    table = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    for row in rows:
        table += "<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns) + "</tr>"
    checks = ""
    for engine, report in document.get("validation", {}).items():
        for check in (report.get("robustness") or {}).get("checks", []):
            mark = "pass" if check["passed"] else "FAIL"
            checks += (f"<tr><td>{html.escape(engine)}</td><td>{html.escape(check['check'])}</td>"
                       f"<td>{mark}</td><td>{html.escape(check['detail'])}</td></tr>")
    images = ""
    for name, path in plots.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        images += (f"<figure><img alt='{html.escape(name)}' "
                   f"src='data:image/png;base64,{data}'></figure>")
    comparison = document["comparison"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>evaluation</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}"
        "figure{display:inline-block;margin:0 1em 1em 0}</style></head><body>"
        f"<h1>Candidates on {document['test_rows']} test rows</h1>"
        f"<p><b>Selected:</b> {html.escape(document['selected']['reason'])}</p>"
        f"<p><b>Against the champion:</b> {html.escape(str(comparison.get('reason', '')))}</p>"
        f"<table>{table}</table><h2>Robustness</h2><table><tr><th>engine</th><th>check</th>"
        f"<th>result</th><th>detail</th></tr>{checks}</table><h2>Plots</h2>{images}"
        "</body></html>")
