"""The local H2O cluster imports the training frame from a Parquet file (``h2o.import_file``)
instead of an upload of the pandas frame: the data H2O trains on must be the same."""

from __future__ import annotations

import numpy as np
import pandas as pd

from autokfp.training.h2o_automl import H2OCluster, _training_frame, wait_for_shutdowns


def _features(rows: int = 300) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    rng = np.random.default_rng(9)
    features = pd.DataFrame({
        "spend": rng.normal(50, 10, rows).round(6),
        "visits": rng.integers(0, 20, rows).astype("float64"),
        "plan": rng.choice(["basic", "pro", "gold"], rows).astype(object),
        # category codes that look like numbers: categories, not numbers, both ways
        "region": rng.choice(["01", "02", "10"], rows).astype(object),
    })
    features.loc[::13, "spend"] = np.nan
    features.loc[::17, "plan"] = None
    target = pd.Series(rng.choice(["no", "yes"], rows))
    return features, target, ["plan", "region"]


def test_the_imported_frame_equals_the_uploaded_one() -> None:
    import h2o

    features, target, categorical = _features()
    frame, column_types, response = _training_frame(features, target, "binary", categorical)
    with H2OCluster(nthreads=1, max_mem_size="1G") as cluster:
        imported = cluster.load(frame, column_types)
        uploaded = h2o.H2OFrame(frame, column_types=column_types)  # the earlier way
        assert imported.dim == uploaded.dim == [300, 5]
        assert imported.types == uploaded.types
        assert imported.types["region"] == "enum" and imported.types[response] == "enum"
        for column in ("plan", "region", response):
            assert sorted(imported[column].levels()[0]) == sorted(uploaded[column].levels()[0])
        # (the download reads "01" back as 1 for both: compare the levels above for the text)
        mine = imported.as_data_frame(use_multi_thread=False)
        theirs = uploaded.as_data_frame(use_multi_thread=False)
        pd.testing.assert_frame_equal(mine, theirs)
        assert sorted(imported["region"].levels()[0]) == ["01", "02", "10"]
        assert mine["spend"].isna().sum() == features["spend"].isna().sum() > 0
    wait_for_shutdowns()  # no JVM of this test outlives it (the next tests count JVMs)


def test_a_feature_file_is_imported_as_the_frame_would_be(tmp_path) -> None:
    """The train step's features written batch by batch (``write_feature_file``) and
    imported where they are: the same frame H2O got from the pandas frame."""
    import h2o

    from autokfp.modeling.feature_file import FeatureFile

    features, target, categorical = _features()
    frame, column_types, response = _training_frame(features, target, "binary", categorical)
    frame.to_parquet(tmp_path / "features.parquet", index=False, row_group_size=64)
    written = FeatureFile(path=tmp_path / "features.parquet", columns=list(features.columns),
                          categorical=categorical, response=response, rows=len(frame))
    same, file_types, file_response = _training_frame(written, target, "binary", categorical)
    assert same is written and file_types == column_types and file_response == response
    with H2OCluster(nthreads=1, max_mem_size="1G") as cluster:
        imported = cluster.load(written, file_types)
        uploaded = h2o.H2OFrame(frame, column_types=column_types)
        assert imported.dim == uploaded.dim == [300, 5]
        assert imported.types == uploaded.types
        for column in ("plan", "region", response):
            assert sorted(imported[column].levels()[0]) == sorted(uploaded[column].levels()[0])
        pd.testing.assert_frame_equal(imported.as_data_frame(use_multi_thread=False),
                                      uploaded.as_data_frame(use_multi_thread=False))
    assert (tmp_path / "features.parquet").exists()  # the step's file: the step removes it
    wait_for_shutdowns()
