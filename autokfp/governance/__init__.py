"""Governance: the audit trail (and, as they land, fairness, explanations, model cards,
compliance reports)."""
