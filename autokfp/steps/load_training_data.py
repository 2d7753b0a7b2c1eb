"""The `load_training_data` step: the training inputs, from their content-addressed folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from autokfp.steps.engineer_features import PLAN_FILE, TRAIN_FILE
from autokfp.steps.io import parquet_rows
from autokfp.steps.results import Publication, StepResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedTrainingData(StepResult):
    """What was loaded, and from where."""

    digest: str
    train_rows: int

    def publication(self) -> Publication:
        return Publication(metadata={"train": {"rows": self.train_rows, "digest": self.digest},
                                     "plan": {"digest": self.digest}})



def load_training_data(training_data: str, train_path: str, plan_path: str) -> LoadedTrainingData:
    """Copy the train rows and the feature plan out of the content-addressed folder
    ``training_data`` (``engineer_features``'s output of that name) and check their digest.

    The task that runs this is cached and has nothing but that URI among its inputs, so in
    the cluster it runs once per distinct content: a new run on the same rows and plan
    reuses its output artifacts, and the GPU training tasks fed from them hit the cache too.

    Raises:
        StorageError: the folder is missing, incomplete or holds other content than its name
            says (the message says to run engineer_features again).
    """
    from autokfp.storage.content import get_content_addressed

    digest = get_content_addressed(training_data, {TRAIN_FILE: train_path, PLAN_FILE: plan_path})
    log.info("training data %s loaded (digest checked)", training_data)
    return LoadedTrainingData(digest=digest, train_rows=parquet_rows(train_path))
