"""KFP component: the KServe InferenceService for the champion."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def deploy_model(
    config: dict,
    registration: Input[Artifact],
    manifest: Output[Artifact],
) -> str:
    """Write the InferenceService that serves the current champion.

    A newly promoted model that replaces a serving champion is rolled out as a canary
    (``deploy.canary_traffic_percent``); the first champion gets all traffic.

    Args:
        config: The run configuration (``deploy``: namespace, replicas, resources, canary).
        registration: The registration JSON from ``register_model``.
        manifest: Output. The InferenceService YAML (apply with ``kubectl apply -f``).

    Returns:
        The action taken: ``initial``, ``canary`` or ``unchanged``.

    Raises:
        DeploymentError: no champion exists in the registry.

    Example:
        >>> deploy_model(config=cfg, registration=r.outputs["registration"])
    """
    import logging

    from autokfp.stages import deploy_stage

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = deploy_stage(config, registration.path, manifest.path)
    manifest.metadata.update(result)
    return result["action"]


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(deploy_model, "deploy_model.yaml")
