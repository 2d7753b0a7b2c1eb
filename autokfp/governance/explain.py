"""Explanations: global importance for any model, local explanations of single predictions.

Everything works on the model's raw input columns (what a request carries), not on the
engineered features, so an explanation names ``tenure_months`` rather than
``signup_date__age_days``. Two methods, both model-agnostic (the packaged pyfunc is a black
box, whatever engine trained it):

* **permutation importance**: how much the held-out metric (AUC for binary, accuracy for
  multiclass, R² for regression) drops when one column's values are shuffled; every
  permutation is scored in one batch.
* **Kernel SHAP** (``shap.KernelExplainer``) over the raw columns against a small
  background sample: per-row contributions that add up, with the base value, to the
  model's output (positive-class probability, or the regression value). Columns are coded
  as numbers for SHAP and decoded before scoring, so categories, text and dates work.
  Multiclass models are not explained with SHAP (stated in the result, never hidden).

H2O's own TreeSHAP contributions are not used: they exist only for single tree models
(not the stacked ensembles AutoML usually picks) and on H2O's encoded columns.
"""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# shap's KernelExplainer draws its coalitions from numpy's global generator (np.random.choice
# and np.random.permutation; shap 0.51 takes no generator or seed), so a seeded run is
# seed -> sample -> restore on process-wide state. Two runs in two threads would interleave
# their draws (and one's restore would rewind the other): each run holds this lock.
_GLOBAL_RNG_LOCK = threading.Lock()

# training rows drawn as Kernel SHAP's background
BACKGROUND_ROWS = 20

H2O_CONTRIBUTIONS_NOTE = ("not run: H2O TreeSHAP contributions exist only for single tree models "
                          "(GBM, DRF, XGBoost), not for the stacked ensembles AutoML usually picks, "
                          "and they explain H2O's encoded columns; Kernel SHAP on the raw columns "
                          "explains every engine's model the same way")


def _predict(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions of an ``AutokfpModel`` or of a loaded MLflow pyfunc."""
    if hasattr(model, "unwrap_python_model"):
        return model.predict(frame)
    return model.predict(None, frame)


def output_name(meta: dict[str, Any]) -> str | None:
    """The single model output explained: positive-class probability or the regression value."""
    if meta["task"] == "binary":
        return f"probability_{meta['class_labels'][1]}"
    if meta["task"] == "regression":
        return "prediction"
    return None


def _metric(meta: dict[str, Any]) -> str:
    return {"binary": "auc", "multiclass": "accuracy", "regression": "r2"}[meta["task"]]


def permutation_importance(model: Any, frame: pd.DataFrame, meta: dict[str, Any],
                           columns: list[str], repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Held-out metric drop per shuffled column (mean and standard deviation over repeats).

    ``frame`` holds raw input columns and the target. One ``predict`` call scores the
    original rows and every permutation together.
    """
    from autokfp.modeling.evaluation import compute_metrics

    rng = np.random.default_rng(seed)
    target = meta["target"]
    rows = frame.reset_index(drop=True)
    inputs = rows.drop(columns=[target])
    blocks = [inputs]
    keys: list[tuple[str, int]] = []
    for column in columns:
        for repeat in range(repeats):
            shuffled = inputs.copy()
            shuffled[column] = inputs[column].to_numpy()[rng.permutation(len(inputs))]
            blocks.append(shuffled)
            keys.append((column, repeat))
    scored = _predict(model, pd.concat(blocks, ignore_index=True))
    metric = _metric(meta)
    n = len(inputs)

    def value(block: int) -> float:
        part = scored.iloc[block * n:(block + 1) * n].reset_index(drop=True)
        return float(compute_metrics(rows[target], part, meta, only={metric})[metric])

    baseline = value(0)
    drops: dict[str, list[float]] = {c: [] for c in columns}
    for index, (column, _repeat) in enumerate(keys, start=1):
        drops[column].append(baseline - value(index))
    ranked = sorted(({"column": c, "importance": float(np.mean(d)), "std": float(np.std(d))}
                     for c, d in drops.items()), key=lambda item: -item["importance"])
    return {"metric": metric, "baseline": baseline, "rows": n, "repeats": repeats,
            "columns": ranked}


@dataclass
class _Codec:
    """Raw columns ↔ numbers, so Kernel SHAP can mix rows (it only copies values)."""

    columns: list[str]
    numeric: set[str]
    tables: dict[str, list[Any]]

    @classmethod
    def fit(cls, frames: list[pd.DataFrame], columns: list[str], numeric: set[str]) -> _Codec:
        tables: dict[str, list[Any]] = {}
        for column in columns:
            if column in numeric:
                continue
            seen: dict[str, Any] = {}
            for frame in frames:
                for value in frame[column].tolist():
                    seen.setdefault(repr(value), value)
            tables[column] = list(seen.values())
        return cls(columns, numeric, tables)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype="float64")
        for j, column in enumerate(self.columns):
            if column in self.numeric:
                out[:, j] = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
            else:
                index = {repr(v): i for i, v in enumerate(self.tables[column])}
                out[:, j] = [index[repr(v)] for v in frame[column].tolist()]
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for j, column in enumerate(self.columns):
            if column in self.numeric:
                data[column] = matrix[:, j]
            else:
                table = np.empty(len(self.tables[column]), dtype=object)
                table[:] = self.tables[column]
                data[column] = table[matrix[:, j].astype(int)]
        return pd.DataFrame(data, columns=self.columns)


def kernel_shap(model: Any, plan: Any, meta: dict[str, Any], background: pd.DataFrame,
                rows: pd.DataFrame, nsamples: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Kernel SHAP contributions of each raw input column for each of ``rows``.

    Kernel SHAP samples feature coalitions from numpy's global generator; it runs under
    ``seed`` (the global state is restored afterwards), so the same model, background and
    rows give the same contributions in every run and every model card. Runs in several
    threads take turns (a process-wide lock), so concurrent runs give the same contributions
    as sequential ones; code in other threads that draws from numpy's global generator
    while a run holds it would still move its sample (autokfp has none).

    Returns ``{"status": "run", "output", "base_value", "columns", "values" (rows × columns),
    "outputs" (the model's output per row), "background_rows", "nsamples"}``, or
    ``{"status": "not_run", "reason"}`` when the model has no single output to explain.
    """
    output = output_name(meta)
    if output is None:
        return {"status": "not_run",
                "reason": f"not run: Kernel SHAP explains one output and this is a {meta['task']} "
                          "model with one probability per class; permutation importance covers it"}
    import shap

    columns = list(plan.input_columns)
    numeric = set(plan.numeric)
    background = background[columns].reset_index(drop=True)
    rows = rows[columns].reset_index(drop=True)
    codec = _Codec.fit([background, rows], columns, numeric)

    def score(matrix: np.ndarray) -> np.ndarray:
        # Kernel SHAP's synthetic rows repeat (Males: 3,300-4,900 distinct of each 10,680):
        # each distinct coded row is decoded, featurised and scored once, and its output
        # taken back to its copies (a packaged model scores each row on its own)
        matrix = np.ascontiguousarray(np.atleast_2d(matrix), dtype="float64")
        keys = matrix.view(np.dtype((np.void, matrix.dtype.itemsize * matrix.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        outputs = _predict(model, codec.decode(matrix[first]))[output].to_numpy(dtype="float64")
        return outputs[inverse.ravel()]

    nsamples = nsamples or min(2 * len(columns) + 512, 1024)
    explainer = shap.KernelExplainer(score, codec.encode(background), keep_index=False)
    encoded = codec.encode(rows)
    with _GLOBAL_RNG_LOCK:
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            values = np.asarray(explainer.shap_values(encoded, nsamples=nsamples, silent=True,
                                                      l1_reg=False), dtype="float64")
        finally:
            np.random.set_state(state)
    values = values.reshape(len(rows), len(columns))
    base = float(np.ravel(explainer.expected_value)[0])
    return {"status": "run", "output": output, "base_value": base, "columns": columns,
            "values": values.tolist(), "outputs": score(encoded).tolist(),
            "background_rows": len(background), "nsamples": nsamples}


def local_explanations(shap_result: dict[str, Any], rows: pd.DataFrame,
                       predictions: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """One record per row: output, base value, contributions sorted by size, the inputs."""
    out = []
    for i, contributions in enumerate(shap_result["values"]):
        pairs = sorted(zip(shap_result["columns"], contributions), key=lambda p: -abs(p[1]))
        record: dict[str, Any] = {
            "row": i, "output": shap_result["output"], "value": shap_result["outputs"][i],
            "base_value": shap_result["base_value"],
            "contributions": {c: float(v) for c, v in pairs},
            "inputs": {c: _json_value(rows.iloc[i][c]) for c in shap_result["columns"]},
        }
        if predictions is not None:
            record["prediction"] = _json_value(predictions.iloc[i]["prediction"])
        out.append(record)
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def background_records(frame: pd.DataFrame, columns: list[str], rows: int = 25,
                       seed: int = 0) -> list[dict[str, Any]]:
    """A small JSON-safe sample of raw input rows: the SHAP background a served model uses."""
    sample = frame[columns].sample(n=min(rows, len(frame)), random_state=seed)
    return [{c: _json_value(v) for c, v in zip(columns, row)}
            for row in sample.itertuples(index=False)]


# ------------------------------------------------------------------------------- plots


def _figure(height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, height))
    return plt, fig, ax


def plot_importance(importance: dict[str, Any], path: str | Path) -> Path:
    """Horizontal bars: permutation importance with one standard deviation."""
    items = importance["columns"][::-1]
    plt, fig, ax = _figure(max(2.5, 0.35 * len(items) + 1))
    ax.barh([i["column"] for i in items], [i["importance"] for i in items],
            xerr=[i["std"] for i in items], color="#4c72b0")
    ax.set_xlabel(f"drop in held-out {importance['metric']} when shuffled")
    ax.set_title(f"Permutation importance ({importance['rows']} rows, {importance['repeats']} repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_shap_summary(shap_result: dict[str, Any], path: str | Path) -> Path:
    """Horizontal bars: mean |SHAP value| per column over the explained rows."""
    values = np.abs(np.asarray(shap_result["values"]))
    means = values.mean(axis=0)
    order = np.argsort(means)
    plt, fig, ax = _figure(max(2.5, 0.35 * len(order) + 1))
    ax.barh([shap_result["columns"][i] for i in order], means[order], color="#55a868")
    ax.set_xlabel(f"mean |SHAP value| on {shap_result['output']}")
    ax.set_title(f"Kernel SHAP over {len(values)} rows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_local(explanation: dict[str, Any], path: str | Path, top: int = 12) -> Path:
    """Signed contributions of one prediction, largest first."""
    pairs = list(explanation["contributions"].items())[:top][::-1]
    plt, fig, ax = _figure(max(2.5, 0.35 * len(pairs) + 1))
    ax.barh([f"{c} = {explanation['inputs'].get(c)!s:.20}" for c, _ in pairs], [v for _, v in pairs],
            color=["#c44e52" if v > 0 else "#4c72b0" for _, v in pairs])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"contribution to {explanation['output']}")
    ax.set_title(f"Row {explanation['row']}: {explanation['output']} = {explanation['value']:.3f} "
                 f"(base {explanation['base_value']:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def html_report(result: dict[str, Any], plots: list[Path]) -> str:
    """A self-contained HTML page (plots inlined) for the Kubeflow UI."""
    import html

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Explanations</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{padding:3px 8px;border-bottom:1px solid #ddd}</style></head><body>",
             f"<h1>Explanations: {html.escape(str(result.get('model', '')))}</h1>"]
    importance = result["permutation_importance"]
    parts.append(f"<h2>Permutation importance</h2><p>Held-out {importance['metric']} "
                 f"{importance['baseline']:.4f} on {importance['rows']} rows.</p><table>"
                 "<tr><th>column</th><th>importance</th><th>std</th></tr>")
    parts += [f"<tr><td>{html.escape(i['column'])}</td><td>{i['importance']:.4f}</td>"
              f"<td>{i['std']:.4f}</td></tr>" for i in importance["columns"]]
    parts.append("</table>")
    shap_result = result["shap"]
    parts.append("<h2>Kernel SHAP</h2>")
    if shap_result["status"] != "run":
        parts.append(f"<p>{html.escape(shap_result['reason'])}</p>")
    else:
        parts.append(f"<p>{shap_result['rows']} rows, background {shap_result['background_rows']} "
                     f"rows, {shap_result['nsamples']} samples each; base value "
                     f"{shap_result['base_value']:.4f}.</p>")
    parts.append(f"<h2>H2O contributions</h2><p>{html.escape(result['h2o_contributions'])}</p>")
    for plot in plots:
        encoded = base64.b64encode(Path(plot).read_bytes()).decode()
        parts.append(f"<h3>{html.escape(Path(plot).stem)}</h3>"
                     f"<img src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "".join(parts)


def image_markdown(path: str | Path) -> str:
    """A PNG inlined into Markdown (the Kubeflow UI renders Markdown artifacts)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{Path(path).stem}](data:image/png;base64,{encoded})"


def explain_model(model: Any, plan: Any, meta: dict[str, Any], train: pd.DataFrame,
                  test: pd.DataFrame, out_dir: str | Path, rows: int = 300, shap_rows: int = 20,
                  background_rows: int = BACKGROUND_ROWS, seed: int = 0,
                  nsamples: int | None = None) -> dict[str, Any]:
    """Global and local explanations of a packaged model, with PNG plots in ``out_dir``:
    ``explain_rows`` on the rows drawn from the whole frames (``rows`` test rows for the
    permutation importance, ``background_rows`` training rows for SHAP's background, the
    first ``shap_rows`` test rows explained)."""
    sample = test.sample(n=min(rows, len(test)), random_state=seed)
    background = train.sample(n=min(background_rows, len(train)), random_state=seed)
    return explain_rows(model, plan, meta, sample, background, test.head(max(shap_rows, 0)),
                        out_dir, seed=seed, nsamples=nsamples)


def explain_rows(model: Any, plan: Any, meta: dict[str, Any], sample: pd.DataFrame,
                 background: pd.DataFrame, explained: pd.DataFrame, out_dir: str | Path,
                 seed: int = 0, nsamples: int | None = None) -> dict[str, Any]:
    """``explain_model`` on rows already drawn: ``sample`` (test rows with the target) for the
    permutation importance, ``background`` (training rows) for Kernel SHAP, which explains
    the rows of ``explained`` (none: SHAP not run). The explain step draws them from the
    Parquet files (``feature_file.sample_file``, ``head_file``) as ``explain_model`` draws
    them from the frames, so neither file is read whole."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(plan.input_columns)
    importance = permutation_importance(model, sample[columns + [meta["target"]]], meta, columns,
                                        seed=seed)
    plots = [plot_importance(importance, out / "permutation_importance.png")]
    result: dict[str, Any] = {"permutation_importance": importance,
                              "h2o_contributions": H2O_CONTRIBUTIONS_NOTE, "local": []}
    if len(explained) == 0:
        result["shap"] = {"status": "not_run",
                          "reason": "not run: governance.shap_rows is 0 (no rows to explain)"}
    else:
        shap_result = kernel_shap(model, plan, meta, background, explained, nsamples=nsamples)
        if shap_result["status"] == "run":
            shap_result["rows"] = len(explained)
            shap_result["mean_abs"] = dict(sorted(
                zip(shap_result["columns"],
                    np.abs(np.asarray(shap_result["values"])).mean(axis=0).tolist()),
                key=lambda item: -item[1]))
            predictions = _predict(model, explained[columns])
            result["local"] = local_explanations(shap_result, explained, predictions)
            plots.append(plot_shap_summary(shap_result, out / "shap_summary.png"))
            plots.append(plot_local(result["local"][0], out / "local_row_0.png"))
        result["shap"] = shap_result
    result["plots"] = [p.name for p in plots]
    return result
