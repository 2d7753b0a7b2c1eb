"""Before training: group representation and label rate per group in the training rows."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from autokfp.config import GovernanceSpec
from autokfp.governance.fairness.base import NOT_RUN, PASS, WARN, Check
from autokfp.modeling.model_package import group_labels, numeric_bands

log = logging.getLogger("autokfp.governance.fairness")


def check_training_data(frame: pd.DataFrame, target: str, positive: Any, columns: list[str],
                        spec: GovernanceSpec) -> dict[str, Any]:
    """Group representation and label balance per sensitive column, before training.

    These warn (never block): a label rate that differs by group is what a model learns
    and reproduces, which the post-training check then measures. ``positive`` None (not a
    binary target): representation only.
    """
    positive_mask = frame[target].astype(str) == str(positive)
    result: dict[str, Any] = {}
    for column in columns:
        keys = pd.Series(group_labels(frame[column].tolist(), numeric_bands(frame[column])),
                         index=frame.index)
        counts = keys.value_counts()
        rates = positive_mask.groupby(keys).mean()
        groups = {str(g): {"rows": int(counts[g]), "share": float(counts[g] / len(frame)),
                           "positive_rate": None if positive is None else float(rates[g])}
                  for g in sorted(counts.index)}
        checks: list[Check] = []
        small = {g: s["rows"] for g, s in groups.items() if s["rows"] < spec.min_group_size}
        if small:
            checks.append(Check("group_representation", column, WARN,
                                f"groups with fewer than {spec.min_group_size} training rows: "
                                f"{small}; the model learns little about them and they cannot "
                                "be measured reliably", value=float(min(small.values())),
                                limit=float(spec.min_group_size)))
        else:
            shares = ", ".join(f"{g} {s['share']:.1%}" for g, s in groups.items())
            checks.append(Check("group_representation", column, PASS,
                                f"every group has at least {spec.min_group_size} training rows "
                                f"({shares})", value=float(min(counts)),
                                limit=float(spec.min_group_size)))
        measured = [g for g, s in groups.items() if s["rows"] >= spec.min_group_size]
        if positive is None:
            checks.append(Check("label_balance", column, NOT_RUN,
                                "not run: label rates by group are checked for binary targets"))
        elif len(measured) < 2:
            checks.append(Check("label_balance", column, NOT_RUN,
                                f"fewer than two groups with {spec.min_group_size}+ rows"))
        else:
            high = max(measured, key=lambda g: groups[g]["positive_rate"])
            low = min(measured, key=lambda g: groups[g]["positive_rate"])
            difference = groups[high]["positive_rate"] - groups[low]["positive_rate"]
            ratio = (groups[low]["positive_rate"] / groups[high]["positive_rate"]
                     if groups[high]["positive_rate"] > 0 else 1.0)
            broken = (difference > spec.max_demographic_parity_difference
                      or ratio < spec.min_demographic_parity_ratio)
            detail = (f"label '{positive}' rate {groups[high]['positive_rate']:.3f} ({high}) vs "
                      f"{groups[low]['positive_rate']:.3f} ({low}): difference {difference:.3f}, "
                      f"ratio {ratio:.3f}")
            if broken:
                detail += ("; beyond the parity policy: a model that learns these labels will "
                           "reproduce the gap, the post-training check measures it")
            checks.append(Check("label_balance", column, WARN if broken else PASS, detail,
                                value=difference, limit=spec.max_demographic_parity_difference))
        result[column] = {"groups": groups, "checks": [c.to_dict() for c in checks]}
    return result
