"""Entry point of the serving image: ``python -m autokfp.serving``.

Reads the model folder from ``MODEL_DIR`` (KServe's storage initializer downloads
``STORAGE_URI`` to ``/mnt/models``), the name from ``MODEL_NAME``, the version from
``MODEL_VERSION``, the port from ``PORT`` (8080) and logs predictions under
``AUTOKFP_ARTIFACT_ROOT`` when it is set (``AUTOKFP_PREDICTION_LOG=off`` disables it).
"""

from __future__ import annotations

import logging
import os
import sys

from autokfp.errors import AutokfpError


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from autokfp.serving.predictor import serve

    model_dir = os.environ.get("MODEL_DIR", "/mnt/models")
    name = os.environ.get("MODEL_NAME", "model")
    version = os.environ.get("MODEL_VERSION", "1")
    log_root = os.environ.get("AUTOKFP_ARTIFACT_ROOT")
    if os.environ.get("AUTOKFP_PREDICTION_LOG", "on").lower() in ("off", "false", "0"):
        log_root = None
    try:
        serve(model_dir, name, version, port=int(os.environ.get("PORT", "8080")),
              host=os.environ.get("HOST", "0.0.0.0"), prediction_log_uri=log_root)
    except AutokfpError as error:
        logging.getLogger("autokfp.serving").error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
