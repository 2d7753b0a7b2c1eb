"""PII classification as a DataHub classifier: autokfp's rules inside DataHub's own
classification framework.

DataHub's SQL sources classify columns when a recipe says ``classification: {enabled: true,
classifiers: [{type: autokfp.catalog.classify.AutokfpClassifier}]}``: they sample values,
call the classifier, and attach a glossary term per info type to each field
(``urn:li:glossaryTerm:Email_Address``...). The generated recipes of ``catalog.ingestion:
datahub`` do that for SQL sources.

Why not ``datahub-classify``: acryl-datahub 1.7 removed its built-in ``datahub`` classifier
because the ``acryl-datahub-classify`` package is unmaintained (its last release, 0.0.12,
is marked deprecated), pins ``numpy<2`` and spaCy 3.7, and so cannot be installed next to
this stack (numpy 2, pandas 2.3). DataHub kept the ``Classifier`` interface and registry
for classifiers like this one. ``scripts/pii_precision_recall.py`` measures autokfp's rules
on a labelled sample of columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from datahub.ingestion.glossary.classification_types import (
    ColumnInfo,
    DebugInfo,
    InfotypeProposal,
)
from datahub.ingestion.glossary.classifier import Classifier

# autokfp's PII semantic types -> the info type names DataHub's classifier used
INFOTYPES = {
    "email": "Email_Address",
    "phone": "Phone_Number",
    "card_number": "Credit_Debit_Card_Number",
    "ip_address": "IP_Address",
    "person_name": "Full_Name",
}


class AutokfpClassifier(Classifier):
    """Proposes one info type per column whose values (and name) autokfp's profiler types as
    PII: email, phone, card number, IP address, person name.

    ``verdicts`` (config, a JSON file ``{dataset name: {column: semantic type}}`` with the
    dataset names DataHub's source passes): columns autokfp's crawl of the same run already
    typed are answered from that verdict instead of typing DataHub's sample of them again.
    ``ingest`` writes it per generated recipe; the crawl profiled the same columns (on its own,
    larger sample), so the glossary term and autokfp's ``pii:<kind>`` tag cannot disagree,
    and the second typing of every SQL column (a sixth of a first run) is not done. Columns
    it does not list are typed from DataHub's sample as before.
    """

    def __init__(self, confidence: float = 0.9, verdicts: str | None = None):
        self.confidence = confidence
        self.verdicts: dict[str, dict[str, str]] = {}
        if verdicts:
            import json
            from pathlib import Path

            self.verdicts = json.loads(Path(verdicts).read_text())

    @classmethod
    def create(cls, config_dict: dict[str, Any] | None) -> AutokfpClassifier:
        return cls(**(config_dict or {}))

    def answers(self, dataset_name: str, columns: list[str]) -> bool:
        """Whether every one of ``columns`` of the dataset has the crawl's verdict (so no
        sampled value would be looked at)."""
        known = self.verdicts.get(dataset_name)
        return known is not None and all(c in known for c in columns)

    def classify(self, columns: list[ColumnInfo]) -> list[ColumnInfo]:
        import pandas as pd

        from autokfp.catalog.profiling import infer_semantic_type

        for column in columns:
            name = column.metadata.name or ""
            semantic = self.verdicts.get(column.metadata.dataset_name or "", {}).get(name)
            if semantic is None:
                values = pd.Series(list(column.values), dtype=object)
                semantic = infer_semantic_type(values, name.rsplit(".", 1)[-1])
            infotype = INFOTYPES.get(semantic)
            column.infotype_proposals = [] if infotype is None else [InfotypeProposal(
                infotype=infotype, confidence_level=self.confidence,
                debug_info=DebugInfo(values=self.confidence))]
        return columns


@contextlib.contextmanager
def verdicts_before_samples() -> Iterator[None]:
    """While a recipe runs, DataHub's classification reads no sample of a table whose every
    classified column autokfp's classifier answers from the crawl's verdicts.

    Why: DataHub's SQL sources hand the classification a reader of each table's first rows,
    which ``ClassificationHandler.classify_schema_fields`` calls before it asks any
    classifier; with the crawl's verdicts for every column those values are never looked at,
    and the query per table was 12% of the DataHub pipeline's time on a 1,000-table first
    run (session 15). A table with a column the crawl did not type (or a classifier other
    than autokfp's in the recipe) is sampled as before; the terms attached are the same,
    since they come from the verdicts either way (tested).
    """
    from datahub.ingestion.glossary.classification_mixin import ClassificationHandler

    original = ClassificationHandler.classify_schema_fields

    def classify(self: Any, dataset_name: str, schema_metadata: Any, sample_data: Any) -> None:
        if not isinstance(sample_data, dict) and self.classifiers and all(
                isinstance(c, AutokfpClassifier) for c in self.classifiers):
            columns = [f.fieldPath for f in schema_metadata.fields
                       if self.is_classification_enabled_for_column(dataset_name, f.fieldPath)]
            if all(c.answers(dataset_name, columns) for c in self.classifiers):
                sample_data = {}
        original(self, dataset_name, schema_metadata, sample_data)

    ClassificationHandler.classify_schema_fields = classify  # type: ignore[method-assign]
    try:
        yield
    finally:
        ClassificationHandler.classify_schema_fields = original  # type: ignore[method-assign]
