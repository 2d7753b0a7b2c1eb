"""Governance: the audit trail, fairness checks and mitigation, explanations, model cards,
compliance reports and human approval.

Modules: ``audit`` (hash-chained event trail), ``fairness`` (a package: per-group
metrics, policy checks, mitigation), ``explain`` (permutation importance, Kernel SHAP,
plots), ``model_card``, ``compliance`` and ``approval``. The steps are in
``autokfp.steps`` and the commands in ``autokfp.edge``.
"""

from autokfp.errors import PolicyError

__all__ = ["PolicyError"]
