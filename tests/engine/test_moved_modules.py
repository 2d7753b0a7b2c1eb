"""Models registered before the engine moved into ``autokfp.modeling`` still load."""

from __future__ import annotations

import importlib
import pickle

from autokfp.modeling import model_package


def test_old_module_paths_resolve_to_the_moved_modules() -> None:
    old = importlib.import_module("autokfp.model_package")
    assert old.AutokfpModel is model_package.AutokfpModel
    assert importlib.import_module("autokfp.features").FeaturePlan.__module__ == (
        "autokfp.modeling.features")


def test_a_model_pickled_under_the_old_path_unpickles() -> None:
    model = model_package.AutokfpModel()
    model.meta = {"task": "binary"}
    blob = pickle.dumps(model, protocol=0)  # text protocol: the module path is plain text
    assert b"autokfp.modeling.model_package" in blob
    old = blob.replace(b"autokfp.modeling.model_package", b"autokfp.model_package")
    loaded = pickle.loads(old)
    assert type(loaded) is model_package.AutokfpModel and loaded.meta == {"task": "binary"}
