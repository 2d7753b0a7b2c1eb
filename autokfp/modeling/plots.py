"""Evaluation plots: PNGs for MLflow and the HTML report.

Every candidate (and the champion) is drawn on the same test rows, so the curves can be
compared at a glance. matplotlib is imported here only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from autokfp.modeling.evaluation import encode_labels, predicted_codes, probability_matrix
from autokfp.modeling.validation import calibration_report

Save = Callable[[Any, str], None]


def write_plots(y: pd.Series, predictions: dict[str, pd.DataFrame], meta: dict[str, Any],
                out_dir: str | Any, selected: str | None = None) -> dict[str, Any]:
    """Write ROC, precision-recall, calibration and confusion (or regression) plots.

    ``predictions`` maps a label (an engine, or "champion v3") to its prediction frame.
    Returns {plot name: path}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}

    def save(fig: Any, name: str) -> None:
        path = out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written[name] = path

    if meta["task"] == "regression":
        _regression_plots(plt, save, y, predictions)
        return written
    codes = encode_labels(y, meta)
    known = codes >= 0
    codes = codes[known]
    if meta["task"] == "binary" and len(set(codes)) == 2:
        _roc_and_precision_recall(plt, save, codes, known, predictions, meta)
    _calibration_plot(plt, save, y, predictions, meta)
    name = selected if selected in predictions else next(iter(predictions))
    _confusion_matrix(plt, save, codes, known, name, predictions[name], meta)
    return written


def _regression_plots(plt: Any, save: Save, y: pd.Series,
                      predictions: dict[str, pd.DataFrame]) -> None:
    truth = y.astype("float64").to_numpy()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, frame in predictions.items():
        ax.scatter(truth, frame["prediction"].to_numpy(dtype="float64"), s=8, alpha=0.5,
                   label=label)
    low, high = float(np.nanmin(truth)), float(np.nanmax(truth))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test rows)")
    ax.legend(fontsize=8)
    save(fig, "predicted_vs_actual")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, frame in predictions.items():
        ax.hist(truth - frame["prediction"].to_numpy(dtype="float64"), bins=40, alpha=0.5,
                label=label)
    ax.set(xlabel="residual (actual - predicted)", ylabel="rows", title="Residuals")
    ax.legend(fontsize=8)
    save(fig, "residuals")


def _roc_and_precision_recall(plt: Any, save: Save, codes: np.ndarray, known: np.ndarray,
                              predictions: dict[str, pd.DataFrame],
                              meta: dict[str, Any]) -> None:
    labels = meta["class_labels"]
    fig_roc, ax_roc = plt.subplots(figsize=(5.5, 5))
    fig_pr, ax_pr = plt.subplots(figsize=(5.5, 5))
    for label, frame in predictions.items():
        scores = probability_matrix(frame, meta)[known][:, 1]
        fpr, tpr, _ = skm.roc_curve(codes, scores)
        ax_roc.plot(fpr, tpr, label=f"{label} (AUC {skm.roc_auc_score(codes, scores):.3f})")
        precision, recall, _ = skm.precision_recall_curve(codes, scores)
        ap = skm.average_precision_score(codes, scores)
        ax_pr.plot(recall, precision, label=f"{label} (AP {ap:.3f})")
    ax_roc.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate",
               title="ROC (test rows)")
    ax_roc.legend(fontsize=8, loc="lower right")
    ax_pr.axhline(float(np.mean(codes)), color="grey", linewidth=1, linestyle="--")
    ax_pr.set(xlabel="recall", ylabel="precision",
              title=f"Precision-recall for '{labels[1]}' (test rows)")
    ax_pr.legend(fontsize=8, loc="lower left")
    save(fig_roc, "roc")
    save(fig_pr, "precision_recall")


def _calibration_plot(plt: Any, save: Save, y: pd.Series, predictions: dict[str, pd.DataFrame],
                      meta: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, frame in predictions.items():
        report = calibration_report(y, frame, meta)
        if report:
            ax.plot([b["predicted"] for b in report["bins"]],
                    [b["observed"] for b in report["bins"]],
                    marker="o", label=f"{label} (Brier {report['brier']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency",
           title="Calibration (test rows)")
    ax.legend(fontsize=8, loc="upper left")
    save(fig, "calibration")


def _confusion_matrix(plt: Any, save: Save, codes: np.ndarray, known: np.ndarray, name: str,
                      frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    labels = meta["class_labels"]
    probs = probability_matrix(frame, meta)[known]
    matrix = skm.confusion_matrix(codes, predicted_codes(probs, meta),
                                  labels=list(range(len(labels))))
    size = min(9.0, 3.0 + 0.5 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="actual", title=f"Confusion matrix: {name} (test rows)")
    save(fig, "confusion_matrix")
