"""autokfp: autonomous ML on Kubeflow Pipelines.

The engine (this package) is plain Python and never imports kfp; the KFP faces live in
``components/`` and ``pipelines/``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("autokfp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
