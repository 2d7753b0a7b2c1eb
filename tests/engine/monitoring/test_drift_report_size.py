"""A large Evidently report is linked from a light page, not inlined into the UI artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autokfp.steps.detect_drift import evidently_report


def _frames():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=300), "y": rng.normal(size=300)})
    current = pd.DataFrame({"x": rng.normal(1.0, size=300), "y": rng.normal(size=300)})
    return reference, current


def test_a_report_over_the_limit_is_kept_aside_and_linked(tmp_path) -> None:
    reference, current = _frames()
    kinds = {"x": "numerical", "y": "numerical"}
    small = tmp_path / "inline.html"
    assert evidently_report(reference, current, kinds, str(small)) is None
    inline_size = small.stat().st_size
    page = tmp_path / "linked.html"
    full = tmp_path / "store" / "full.html"
    assert evidently_report(reference, current, kinds, str(page), full_report_uri=str(full),
                            max_bytes=inline_size // 2) is None
    assert full.stat().st_size > inline_size // 2  # the whole report, kept in the store
    text = page.read_text()
    assert len(text) < 2000 and str(full) in text and "too large" in text
    assert Path(small).read_text().count("<script") > 0  # under the limit: inlined as before
