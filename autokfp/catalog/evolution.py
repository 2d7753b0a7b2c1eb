"""Schema evolution: what changed between two catalogued versions of a dataset, and does it
break the models trained on it.

``compare_schemas(old, new)`` lists added, removed, likely-renamed and type-changed
columns and gives a verdict:

* ``unchanged``: same columns with the same physical types (the same fingerprint);
* ``compatible``: columns were added, a numeric column switched between int and float, a
  text column between string and category, or a column nobody uses changed;
* ``breaking``: a column that training uses was removed, renamed or changed to a type of
  another kind (a number became text, a date became a number...).

A rename is a guess: a removed and an added column of the same kind of type whose names
are alike or whose profiles (nulls, distinct values, range, top values) match. It is
reported as a rename, and it is breaking for a used column all the same: a model asks
for columns by name.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from autokfp.catalog.schema import ColumnSchema, DatasetSchema

Verdict = Literal["unchanged", "compatible", "breaking"]

# Physical types of one kind hold the same values for a model: int64 -> float64 only
# widens a number (it happens as soon as a column gets a missing value).
TYPE_KINDS: dict[str, str] = {
    "int64": "number",
    "float64": "number",
    "complex128": "number",
    "timedelta64": "duration",
    "bool": "boolean",
    "datetime64": "datetime",
    "string": "text",
    "category": "text",
    "bytes": "bytes",
    "json": "json",
}
RENAME_THRESHOLD = 0.6


def type_kind(physical_type: str) -> str:
    """The kind of a physical type (number, text, datetime, boolean...)."""
    return TYPE_KINDS.get(physical_type, physical_type)


@dataclass
class TypeChange:
    column: str
    old_type: str
    new_type: str
    breaking: bool

    def describe(self) -> str:
        before, after = type_kind(self.old_type), type_kind(self.new_type)
        note = f"still {before}" if before == after else f"was {before}, now {after}"
        return f"'{self.column}' changed type {self.old_type} -> {self.new_type} ({note})"


@dataclass
class Rename:
    old: str
    new: str
    score: float

    def describe(self) -> str:
        return f"'{self.old}' was likely renamed to '{self.new}' (similarity {self.score:.2f})"


@dataclass
class SchemaChange:
    """The difference between two versions of one dataset's schema."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[Rename] = field(default_factory=list)
    type_changed: list[TypeChange] = field(default_factory=list)
    semantic_changed: list[dict[str, str]] = field(default_factory=list)
    breaking_columns: list[str] = field(default_factory=list)
    verdict: Verdict = "unchanged"

    @property
    def breaking(self) -> bool:
        return self.verdict == "breaking"

    def reasons(self, mark: bool = True) -> list[str]:
        """One line per change, breaking ones first (prefixed ``BREAKING:`` with ``mark``)."""
        lines: list[tuple[bool, str]] = []
        broken = set(self.breaking_columns)
        for name in self.removed:
            lines.append((name in broken, f"'{name}' was removed"))
        for rename in self.renamed:
            lines.append((rename.old in broken, rename.describe()))
        for change in self.type_changed:
            lines.append((change.column in broken, change.describe()))
        for name in self.added:
            lines.append((False, f"'{name}' was added"))
        lines.sort(key=lambda item: not item[0])
        return [("BREAKING: " if bad and mark else "") + text for bad, text in lines]

    def summary(self) -> str:
        if self.verdict == "unchanged":
            return "unchanged"
        return f"{self.verdict}: " + "; ".join(self.reasons(mark=False))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = self.reasons()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SchemaChange:
        return cls(
            added=list(data.get("added", [])),
            removed=list(data.get("removed", [])),
            renamed=[Rename(**r) for r in data.get("renamed", [])],
            type_changed=[TypeChange(**t) for t in data.get("type_changed", [])],
            semantic_changed=list(data.get("semantic_changed", [])),
            breaking_columns=list(data.get("breaking_columns", [])),
            verdict=data.get("verdict", "unchanged"),
        )


def _name_similarity(a: str, b: str) -> float:
    from autokfp.catalog.profiling import name_tokens

    left, right = "_".join(name_tokens(a)), "_".join(name_tokens(b))
    return difflib.SequenceMatcher(None, left, right).ratio()


def _close(a: Any, b: Any) -> float:
    """1.0 when two numbers are equal, falling towards 0 as they drift apart."""
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return 1.0 if a == b else 0.0
    if not (math.isfinite(x) and math.isfinite(y)):
        return 0.0
    scale = max(abs(x), abs(y), 1e-9)
    return max(0.0, 1.0 - abs(x - y) / scale)


def _profile_similarity(old: ColumnSchema, new: ColumnSchema, old_rows: int,
                        new_rows: int) -> float:
    scores = [1.0 if old.semantic_type == new.semantic_type else 0.0]
    old_nulls = old.null_count / old_rows if old_rows else 0.0
    new_nulls = new.null_count / new_rows if new_rows else 0.0
    scores.append(1.0 - min(1.0, abs(old_nulls - new_nulls) * 5))
    old_distinct = old.distinct_count / old_rows if old_rows else 0.0
    new_distinct = new.distinct_count / new_rows if new_rows else 0.0
    scores.append(1.0 - min(1.0, abs(old_distinct - new_distinct) * 2))
    if old.mean is not None and new.mean is not None:
        scores += [_close(old.mean, new.mean), _close(old.min, new.min), _close(old.max, new.max)]
    if old.top_values and new.top_values:
        old_top = {v for v, _ in old.top_values}
        new_top = {v for v, _ in new.top_values}
        scores.append(len(old_top & new_top) / len(old_top | new_top))
    return sum(scores) / len(scores)


def _renames(old: DatasetSchema, new: DatasetSchema, removed: list[str],
             added: list[str]) -> list[Rename]:
    candidates: list[Rename] = []
    for old_name in removed:
        before = old.column(old_name)
        for new_name in added:
            after = new.column(new_name)
            if type_kind(before.physical_type) != type_kind(after.physical_type):
                continue
            name = _name_similarity(old_name, new_name)
            profile = _profile_similarity(before, after, old.sample_rows, new.sample_rows)
            # A look-alike profile counts most; a similar name alone can be chance.
            score = 0.4 * name + 0.6 * profile
            if score >= RENAME_THRESHOLD:
                candidates.append(Rename(old=old_name, new=new_name, score=round(score, 3)))
    chosen: list[Rename] = []
    used_old: set[str] = set()
    used_new: set[str] = set()
    for rename in sorted(candidates, key=lambda r: -r.score):
        if rename.old in used_old or rename.new in used_new:
            continue
        chosen.append(rename)
        used_old.add(rename.old)
        used_new.add(rename.new)
    return chosen


def compare_schemas(old: DatasetSchema, new: DatasetSchema,
                    used_columns: Iterable[str] | None = None) -> SchemaChange:
    """Compare two versions of a dataset's schema.

    Args:
        old: the earlier (catalogued or accepted) version.
        new: the version just discovered.
        used_columns: the columns models read (from lineage); changes to other columns
            are compatible. ``None`` treats every column of ``old`` as used.

    Returns:
        The change with its verdict; ``breaking_columns`` names the used columns that were
        removed, renamed or changed to another kind of type.

    Example:
        >>> change = compare_schemas(v1, v2)
        >>> change.verdict, change.breaking_columns
        ('breaking', ['tenure_months'])
    """
    old_names = old.column_names
    new_names = new.column_names
    used = set(old_names) if used_columns is None else set(used_columns)
    removed = [n for n in old_names if n not in new_names]
    added = [n for n in new_names if n not in old_names]
    renamed = _renames(old, new, removed, added)
    renamed_old = {r.old for r in renamed}
    renamed_new = {r.new for r in renamed}
    type_changed = []
    semantic_changed = []
    for name in old_names:
        if name not in new_names:
            continue
        before, after = old.column(name), new.column(name)
        if before.physical_type != after.physical_type:
            kind_changed = type_kind(before.physical_type) != type_kind(after.physical_type)
            type_changed.append(TypeChange(name, before.physical_type, after.physical_type,
                                           breaking=kind_changed and name in used))
        elif before.semantic_type != after.semantic_type:
            semantic_changed.append({"column": name, "old": before.semantic_type,
                                     "new": after.semantic_type})
    breaking = [n for n in removed if n in used]
    breaking += [c.column for c in type_changed if c.breaking]
    change = SchemaChange(
        added=[n for n in added if n not in renamed_new],
        removed=[n for n in removed if n not in renamed_old],
        renamed=renamed,
        type_changed=type_changed,
        semantic_changed=semantic_changed,
        breaking_columns=[n for n in old_names if n in set(breaking)],
    )
    if change.breaking_columns:
        change.verdict = "breaking"
    elif added or removed or type_changed or old_names != new_names:
        change.verdict = "compatible"
    return change
