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
