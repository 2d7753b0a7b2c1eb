"""Governance: the audit trail, fairness checks and mitigation, explanations, model cards,
compliance reports and human approval.

Modules: ``audit`` (hash-chained event trail), ``fairness`` (per-group metrics, policy
checks, per-group decision thresholds), ``explain`` (permutation importance, Kernel SHAP,
plots), ``model_card``, ``compliance``, ``approval``, ``stages`` (what the KFP components
call) and ``commands`` (``autokfp audit`` / ``autokfp approve``).
"""

from autokfp.errors import PolicyError

__all__ = ["PolicyError"]
