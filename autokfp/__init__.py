"""autokfp: autonomous ML on Kubeflow Pipelines.

The engine (this package) is plain Python and never imports kfp; the KFP faces live in
``components/`` and ``pipelines/``.
"""

import os as _os
from importlib.metadata import PackageNotFoundError, version

# MLflow 3's usage telemetry is off unless a user turns it on (MLFLOW_DISABLE_TELEMETRY=false):
# its client thread sets and unsets _MLFLOW_TELEMETRY_SESSION_ID in os.environ while a task
# iterates os.environ (requests' proxy lookup on every call to the tracking server), which
# raised KeyError inside a registration in make test-cluster; and a pipeline's pods have no
# business reporting usage to a third party. Set before mlflow is imported anywhere.
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

try:
    __version__ = version("autokfp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]


def _install_moved_module_aliases() -> None:
    """Old module paths keep importing: registered models pickle ``AutokfpModel`` by its
    module path, and models registered before the engine moved into ``autokfp.modeling``
    name ``autokfp.model_package``. Resolved on import only (no static import upwards)."""
    import importlib
    import importlib.abc
    import importlib.util
    import sys

    moved = {f"autokfp.{name}": f"autokfp.modeling.{name}" for name in (
        "model_package", "features", "calibration", "evaluation", "validation", "selection",
        "registry", "partition", "tasks")}

    class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
            if fullname in moved:
                return importlib.util.spec_from_loader(fullname, self)
            return None

        def create_module(self, spec):  # type: ignore[no-untyped-def]
            module = importlib.import_module(moved[spec.name])
            self._real_spec = module.__spec__
            return module

        def exec_module(self, module):  # type: ignore[no-untyped-def]
            # the import system stamped the alias's spec on the real module: put its own back
            module.__spec__ = self._real_spec

    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())


_install_moved_module_aliases()
