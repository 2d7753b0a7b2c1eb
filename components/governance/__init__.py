"""Governance components: fairness before and after training, explanations, model card and
compliance report (see docs/governance.md)."""

from components.governance.bias_check.component import bias_check
from components.governance.check_data_bias.component import check_data_bias
from components.governance.explain_model.component import explain_model
from components.governance.write_model_card.component import write_model_card

GOVERNANCE_COMPONENTS = (check_data_bias, bias_check, explain_model, write_model_card)

__all__ = ["GOVERNANCE_COMPONENTS", "bias_check", "check_data_bias", "explain_model",
           "write_model_card"]
