"""Fairness: per-group metrics, policy checks and mitigation by per-group thresholds.

Sensitive attributes come from ``governance.sensitive_columns`` or, when that is empty,
from the columns the catalog tagged ``sensitive``. Before training, ``check_training_data``
looks at group representation and the label rate of each group. After training,
``assess_fairness`` computes, per group, the selection rate, mean score, TPR, FPR, error
rate and AUC (with fairlearn's ``MetricFrame``), then over the groups large enough to
measure: demographic-parity difference and ratio of the decisions at the model's threshold,
the same parity when the top-scored share equal to the training positive rate is flagged
(``governance.ranking_parity``: a churn score is mostly used to rank, and a model can
reproduce a biased label in its scores while its decisions at one threshold look fair),
and the equalized-odds difference; each is checked against the policy.

When a limit is broken, the mitigation is post-processing fitted on the training rows and
re-checked on the held-out rows, deterministic so a request always gets the same answer:

1. if the ranking breaks parity, a per-group **score repair** moves each group's scores
   part of the way towards the pooled distribution at the same rank (order within a group
   is kept); the smallest strength that meets the policy wins;
2. if decisions still break parity (or equalized odds), ``fit_group_thresholds`` picks
   one decision threshold per group (in the spirit of fairlearn's ``ThresholdOptimizer``):
   among thresholds whose per-group rates satisfy the policy with a safety margin, the
   most accurate.

Both travel inside the registered pyfunc (``meta['fairness_mitigation']``), so serving
applies them. Nothing is ever silently passed: a check that cannot run says ``not_run``
and why.

Modules, in the order of the check: ``sensitive`` (which columns), ``groups`` (per-group
metrics and policy checks), ``data`` (before training), ``mitigation`` (score repair and
per-group thresholds), ``report`` (Markdown) and ``assess`` (the whole check); ``base``
holds the statuses and the ``Check`` record.
"""

from autokfp.governance.fairness.assess import (
    assess_fairness,
    measurable_groups,
)
from autokfp.governance.fairness.base import (
    FAIL,
    INFO,
    MARGINS,
    NOT_RUN,
    PASS,
    WARN,
    Check,
)
from autokfp.governance.fairness.data import (
    check_training_data,
)
from autokfp.governance.fairness.groups import (
    ColumnAssessment,
    assess_column,
    disparities,
    disparity_intervals,
    group_metrics,
    top_share_cut,
)
from autokfp.governance.fairness.mitigation import (
    GroupRates,
    apply_mitigation,
    describe_mitigation,
    fit_group_thresholds,
    fit_mitigation,
    fit_score_repair,
)
from autokfp.governance.fairness.report import (
    render_markdown,
    summary_metrics,
)
from autokfp.governance.fairness.sensitive import (
    no_sensitive_attribute,
    resolve_sensitive_columns,
)
from autokfp.modeling.model_package import group_labels, numeric_bands  # noqa: E402

__all__ = ["group_labels", "numeric_bands", "Check", "ColumnAssessment", "FAIL", "GroupRates", "INFO", "MARGINS", "NOT_RUN", "PASS", "WARN", "apply_mitigation", "assess_column", "assess_fairness", "check_training_data", "describe_mitigation", "disparities", "disparity_intervals", "measurable_groups", "fit_group_thresholds", "fit_mitigation", "fit_score_repair", "group_metrics", "no_sensitive_attribute", "render_markdown", "resolve_sensitive_columns", "summary_metrics", "top_share_cut"]
