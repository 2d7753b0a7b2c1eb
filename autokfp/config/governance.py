"""Governance: approval, fairness, explanations and the model card."""

from __future__ import annotations

from pydantic import Field

from autokfp.config.base import _Strict


class GovernanceSpec(_Strict):
    """Fairness policy, explanations and human oversight (see docs/governance.md)."""

    sensitive_columns: list[str] = Field(
        default_factory=list,
        description="protected attributes to check; empty: the columns the catalog tagged 'sensitive'")
    max_demographic_parity_difference: float = Field(default=0.1, ge=0.0, le=1.0)
    min_demographic_parity_ratio: float = Field(default=0.8, ge=0.0, le=1.0)
    max_equalized_odds_difference: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="limit on the larger of the TPR and FPR gaps between groups; unset: reported only")
    # at 100 rows a selection rate's standard error is about 0.045, half the default parity
    # limit: smaller groups cannot be told apart from noise, so they are reported, not judged
    min_group_size: int = Field(
        default=100, ge=1, description="a group with fewer held-out rows is reported as too small to measure")
    ranking_parity: bool = Field(
        default=True, description="also hold the ranking to the parity limits: the groups' rates "
                                  "when the top-scored share equal to the training positive rate "
                                  "is flagged, not only the decisions at the threshold")
    mitigate: bool = Field(
        default=True, description="repair scores / fit per-group thresholds when a limit is broken")
    block_deploy_on_bias: bool = Field(
        default=True, description="stop the run (nothing registered or deployed) if a limit stays broken")
    require_approval: bool = Field(
        default=False, description="a person must run 'autokfp approve MODEL VERSION' before production")
    explain_rows: int = Field(default=300, ge=20, le=100_000,
                              description="held-out rows used for permutation importance")
    shap_rows: int = Field(default=20, ge=0, le=1_000,
                           description="rows explained with Kernel SHAP (0: skip SHAP)")
    intended_use: str | None = Field(default=None, description="the model card's intended-use statement")
