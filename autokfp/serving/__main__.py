"""Entry point of the serving image: ``python -m autokfp.serving``.

Reads the model folder from ``MODEL_DIR`` (KServe's storage initializer downloads
``STORAGE_URI`` to ``/mnt/models``), or fetches it first from ``MODEL_URI`` / ``--model_uri``
when set (``models:/churn@champion`` through ``MLFLOW_TRACKING_URI``, a ``gs://``,
``s3://`` or ``minio://`` prefix; see ``autokfp.serving.fetch``), the name from
``MODEL_NAME``, the version from
``MODEL_VERSION``, the port from ``PORT`` (8080) and logs predictions under
``AUTOKFP_ARTIFACT_ROOT`` when it is set (``AUTOKFP_PREDICTION_LOG=off`` disables it).

It binds ``HOST``, by default 0.0.0.0 on purpose: in a pod the kubelet's probes, the
Service and Knative's queue-proxy reach the container on the pod's address, and the
network policy or mesh in front of the pod decides who may call it. The server has no
authentication of its own and no state-changing route (see ``guard``); outside a pod,
``autokfp serve`` binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from autokfp.errors import AutokfpError

DEFAULT_HOST = "0.0.0.0"  # noqa: S104 - in a pod; see the module docstring


def main(argv: list[str] | None = None) -> int:
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from autokfp.serving.predictor import serve
    from autokfp.training.mojo_service import SCORER_ENV

    # a predictor scores in its own JVM: it may outlive the run whose shared scorer the
    # deploy step's environment names, and a request must not cross another socket
    os.environ.pop(SCORER_ENV, None)

    # KServe ServingRuntimes pass these as arguments; the environment is the fallback
    parser = argparse.ArgumentParser(prog="python -m autokfp.serving")
    parser.add_argument("--model_name", default=os.environ.get("MODEL_NAME", "model"))
    parser.add_argument("--model_dir", default=os.environ.get("MODEL_DIR", "/mnt/models"))
    parser.add_argument("--http_port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--model_uri", default=os.environ.get("MODEL_URI") or None)
    args, _ = parser.parse_known_args(argv)
    model_dir, name = args.model_dir, args.model_name
    if args.model_uri:
        import tempfile

        from autokfp.serving.fetch import fetch_model

        try:
            model_dir = str(fetch_model(args.model_uri,
                                        Path(tempfile.mkdtemp(prefix="autokfp-model-")) / "model"))
        except AutokfpError as error:
            logging.getLogger("autokfp.serving").error("%s", error)
            return 2
    os.environ["PORT"] = str(args.http_port)
    version = os.environ.get("MODEL_VERSION", "1")
    log_root = os.environ.get("AUTOKFP_ARTIFACT_ROOT")
    if os.environ.get("AUTOKFP_PREDICTION_LOG", "on").lower() in ("off", "false", "0"):
        log_root = None
    from autokfp.lifeline import watch_serving_state

    watch_serving_state()  # a local predictor the deploy step started: see LocalServing.start
    try:
        serve(model_dir, name, version, port=int(os.environ.get("PORT", "8080")),
              host=os.environ.get("HOST", DEFAULT_HOST), prediction_log_uri=log_root)
    except AutokfpError as error:
        logging.getLogger("autokfp.serving").error("%s", error)
        return 2
    except Exception as error:  # noqa: BLE001 - a model that cannot load must say why, briefly
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        logging.getLogger("autokfp.serving").error(
            "model in %s could not be loaded and will not be served (%s: %s); check that the "
            "folder is a complete autokfp model package", model_dir, type(error).__name__, first_line[:500])
        return 3
    return 0


def _end(code: int) -> None:
    """End the process once the server has stopped: ``serve`` has closed what it writes
    (the prediction log) by then. ``os._exit`` skips the interpreter's teardown of the
    serving stack, the model and JPype's JVM, which took 5-6 s under load (a deploy step
    waits for its verification server to exit; a pod's termination waits too)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    _end(main())
