"""Source kinds: every ``kind`` the config accepts has a registered reader."""

from __future__ import annotations

import typing

import pytest

from autokfp.catalog.sources import SOURCE_KINDS, open_source
from autokfp.config import Source
from autokfp.errors import ConfigError


def test_each_configurable_source_kind_is_registered() -> None:
    union = typing.get_args(Source)[0]
    kinds = {typing.get_args(model.model_fields["kind"].annotation)[0]
             for model in typing.get_args(union)}
    assert kinds == set(SOURCE_KINDS)


def test_an_unknown_kind_is_a_config_error() -> None:
    class Elsewhere:
        kind = "ftp"
        name = "x"

    with pytest.raises(ConfigError, match="unknown source kind: Elsewhere"):
        open_source(Elsewhere())


def test_a_large_parquet_file_is_counted_from_its_footer_and_sampled_across_row_groups(
        tmp_path) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from autokfp.catalog.sources.files import parquet_sample

    path = tmp_path / "big.parquet"
    frame = pd.DataFrame({"row": np.arange(50_000), "x": np.linspace(0, 1, 50_000)})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=2_000)  # 25 row groups
    sample, total = parquet_sample(path, 1_000)
    assert total == 50_000 and len(sample) == 1_000
    assert sample["row"].is_unique and list(sample.columns) == ["row", "x"]
    groups = set(sample["row"] // 2_000)
    assert 2 <= len(groups) <= 8  # spread over the file, never more groups than allowed
    assert sample["row"].max() - sample["row"].min() > 10_000
    small, count = parquet_sample(path, 60_000)  # no larger than the sample: read whole
    assert count == 50_000 and small["row"].tolist() == list(range(50_000))


def test_dataset_urns_are_datahubs_own_for_every_name_platform_instance_and_env() -> None:
    """``datahub_urn`` puts plain names between the parts DataHub built once per platform
    and env; every URN (and every refusal) equals DataHub's builder's, names it encodes,
    the probe name itself, URN-form platforms and invalid ones included."""
    from types import SimpleNamespace

    from datahub.emitter.mce_builder import make_dataset_urn_with_platform_instance

    from autokfp.catalog.sources.base import datahub_urn

    def outcome(build, *args):
        try:
            return build(*args)
        except Exception as exc:
            return type(exc).__name__

    names = ["a", "main.t", "x,y", "p(q)", "Ünï", "a b", "autokfp_probe", "db.s.t",
             "café/x.csv", "", "%41", "t)"]
    checked = 0
    for platform in ("sqlite", "file", "postgres", "urn:li:dataPlatform:s3", "bad,platform"):
        for instance in (None, "inst", "in,st"):
            for env in (None, "prod", "DEV"):
                config = SimpleNamespace(platform_instance=instance, env=env)
                for name in names:
                    assert outcome(datahub_urn, platform, name, config) == outcome(
                        make_dataset_urn_with_platform_instance, platform, name, instance,
                        env or "PROD"), (platform, instance, env, name)
                    checked += 1
    assert checked == 5 * 3 * 3 * len(names)
