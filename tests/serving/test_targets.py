"""Serving targets: every ``deploy.target`` the config accepts has a registered target."""

from __future__ import annotations

import typing

import pytest

from autokfp.config import DeploySpec
from autokfp.errors import DeploymentError
from autokfp.serving.targets import SERVING_TARGETS, open_target, rolls_out


def test_each_configurable_target_is_registered() -> None:
    configurable = set(typing.get_args(DeploySpec.model_fields["target"].annotation)) - {"auto"}
    assert configurable == set(SERVING_TARGETS)
    assert not rolls_out("manifest")
    assert rolls_out("local") and rolls_out("kubernetes")


def test_an_unknown_target_names_the_known_ones() -> None:
    with pytest.raises(DeploymentError, match="unknown deploy target 'nomad'; use kubernetes, "
                                              "local, manifest"):
        open_target("nomad", None, None)  # type: ignore[arg-type]
