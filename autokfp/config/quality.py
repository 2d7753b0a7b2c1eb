"""The data quality gate's settings."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_serializer, field_validator

from autokfp.config.base import _Strict


class QualitySpec(_Strict):
    min_rows: int = Field(default=100, ge=10)
    max_missing_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    fail_on_missing_fraction: float = Field(default=0.95, ge=0.0, le=1.0)
    max_target_missing_fraction: float = Field(default=0.0, ge=0.0, le=0.5)
    min_class_count: int = Field(default=10, ge=1)
    ranges: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=dict,
        description="column -> [min, max] (either may be null) or {min: .., max: ..} (either "
                    "may be left out); values outside fail the gate",
    )
    allowed_categories: dict[str, list[str]] = Field(
        default_factory=dict,
        description="column -> the values it may hold; any other value fails the gate",
    )
    max_out_of_policy_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="share of rows allowed outside ranges / allowed_categories before failing "
                    "(below it the check warns)",
    )
    summary_max_columns: int = Field(
        default=50, ge=1, le=2000,
        description="columns in Evidently's data summary (the target first, then file order); "
                    "the page names the ones left out. Evidently costs ~0.2 s per column here",
    )
    summary_max_rows: int = Field(
        default=50_000, ge=100,
        description="rows in Evidently's data summary (a fixed-seed uniform sample above it)",
    )
    summary_time_limit_secs: float = Field(
        default=120.0, gt=0, le=3600,
        description="Evidently's data summary is stopped after this long and the page says so "
                    "(it never holds up the quality gate)",
    )


    @field_validator("ranges", mode="before")
    @classmethod
    def _ranges_from_mappings(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        bounds = {}
        for column, bound in value.items():
            if isinstance(bound, dict):
                unknown = sorted(set(bound) - {"min", "max"})
                if unknown:
                    raise ValueError(f"the range of '{column}' has unknown key(s) {unknown}; "
                                     "give min and/or max")
                bound = (bound.get("min"), bound.get("max"))
            bounds[column] = bound
        return bounds

    @field_serializer("ranges")
    def _ranges_as_mappings(self, ranges: dict[str, tuple[float | None, float | None]]
                            ) -> dict[str, dict[str, float]]:
        # {min, max} without the open side: KFP pipeline parameters cannot hold a null
        return {column: {key: bound for key, bound in (("min", low), ("max", high))
                         if bound is not None}
                for column, (low, high) in ranges.items()}
