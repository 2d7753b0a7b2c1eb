"""kfp.local's own task cache (kfp 2.17, ``local.init(enable_caching=True)``) over the front of
the training graph: discover -> engineer_features -> load_training_data -> a training task.

kfp.local keys a task by its component, command, image and arguments, an artifact by its
URI, which holds the run's name (``kfp/local/cache.py``): like the cluster's key
(``tests/compile/test_training_cache_key.py``), engineer_features' artifacts are new in every
run, and only the content-addressed ``load_training_data`` lets a second run on the same
data skip the training task. The training task is a stand-in that records each time it runs
(training itself would take minutes here and is not what is checked).
"""

import contextlib
from pathlib import Path

from kfp import dsl, local

from autokfp.components import discover, engineer_features, load_training_data
from autokfp.edge.taskfork import forked_tasks


@dsl.component(base_image="python:3.11")
def train_stand_in(train: dsl.Input[dsl.Dataset], plan: dsl.Input[dsl.Artifact], runs: str) -> str:
    """Stands in for train_model: appends a line to ``runs`` each time it actually runs."""
    import hashlib

    digest = hashlib.sha256(open(train.path, "rb").read() + open(plan.path, "rb").read()).hexdigest()
    with open(runs, "a") as handle:
        handle.write(digest + "\n")
    return digest


def test_a_second_local_run_on_the_same_data_skips_training(tmp_path, autokfp_home, churn_frame,
                                                            monkeypatch) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    runs = tmp_path / "training-runs.txt"
    config = {"name": "churn-cache", "sources": [{"name": "files", "kind": "folder",
                                                  "path": str(folder)}],
              "training": {"dataset": "files/customers.parquet", "target": "churned",
                           "id_column": "customer_id"},
              "quality": {"min_rows": 100}}

    @dsl.pipeline(name="training-front")
    def training_front(config: dict, runs: str):
        found = discover(config=config)
        found.set_caching_options(False)  # as in autonomous-training: sources may change
        features = engineer_features(config=config, dataset=found.outputs["dataset"],
                                     schema=found.outputs["schema"])
        data = load_training_data(training_data=features.outputs["training_data"])
        train_stand_in(train=data.outputs["train"], plan=data.outputs["plan"], runs=runs)

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    autokfp_home.export()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=autokfp_home.pipeline_root,
               raise_on_error=True, enable_caching=True, cache_root=str(tmp_path / "kfp-cache"))
    stack = contextlib.ExitStack()
    # autokfp's tasks forked from a warm worker, as `autokfp run` runs them (the stand-in
    # reinstalls kfp first: not the plain command, so a new interpreter as before)
    worker = stack.enter_context(forked_tasks())
    try:
        assert worker is not None and worker.ready(wait=120), "the warm worker did not start"
        frame = churn_frame.head(400)
        frame.to_parquet(folder / "customers.parquet", index=False)
        training_front(config=config, runs=str(runs))
        training_front(config=config, runs=str(runs))  # same data: training is a cache hit
        assert len(runs.read_text().splitlines()) == 1
        changed = frame.copy()
        changed.loc[changed.index[:40], "monthly_charges"] += 1.0  # some training rows change
        changed.to_parquet(folder / "customers.parquet", index=False)
        training_front(config=config, runs=str(runs))
        trained = runs.read_text().splitlines()
        assert len(trained) == 2 and trained[0] != trained[1]
        # the content-addressed copies: one folder per distinct content
        stored = sorted(Path(autokfp_home.artifact_root, "training-data").glob("sha256-*"))
        assert len(stored) == 2
        assert worker.forked > 0
    finally:
        stack.close()
        local.init(runner=local.SubprocessRunner(use_venv=False),
                   pipeline_root=autokfp_home.pipeline_root)
