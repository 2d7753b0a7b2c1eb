"""Governance components: fairness before and after training, explanations, model card and
compliance report (see docs/governance.md). Found by convention: see ``components``."""
