"""Which columns are sensitive attributes: the policy's list, else the catalog's tags."""

from __future__ import annotations

import logging
from typing import Any

from autokfp.config import GovernanceSpec
from autokfp.governance.fairness.base import NOT_RUN, Check

log = logging.getLogger("autokfp.governance.fairness")


def resolve_sensitive_columns(schema: Any, spec: GovernanceSpec,
                              columns: list[str]) -> tuple[list[str], str, list[Check]]:
    """Which columns to check, where that came from, and checks for named-but-absent ones.

    ``schema`` is the catalog's ``DatasetSchema`` (or None); ``columns`` the data's columns.
    """
    problems: list[Check] = []
    if spec.sensitive_columns:
        source = "config (governance.sensitive_columns)"
        wanted = list(spec.sensitive_columns)
    else:
        source = "catalog tag 'sensitive'"
        wanted = [c.name for c in (schema.columns if schema is not None else []) if c.is_sensitive]
    found = []
    for name in wanted:
        if name in columns:
            found.append(name)
        else:
            problems.append(Check("sensitive_attribute", name, NOT_RUN,
                                  f"column '{name}' (from the {source}) is not in the data: it cannot "
                                  "be checked; fix governance.sensitive_columns"))
    return found, source, problems


def no_sensitive_attribute(source: str) -> Check:
    return Check("sensitive_attribute", None, NOT_RUN,
                 "no sensitive attribute known: the catalog tagged no column 'sensitive' and "
                 "governance.sensitive_columns is empty, so no fairness check ran; name the "
                 f"protected attributes in governance.sensitive_columns (looked in: {source})")
