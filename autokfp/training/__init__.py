"""Training engines behind one small interface (``base.Engine``), found in ``registry``."""

from autokfp.training.base import Engine, EngineResult, EngineSettings, FrameScorer, Scorer
from autokfp.training.registry import (
    EngineSpec,
    default_engines,
    engine_names,
    engine_spec,
    get_engine,
    register_engine,
)

__all__ = ["Engine", "EngineResult", "EngineSettings", "EngineSpec", "FrameScorer", "Scorer",
           "default_engines", "engine_names", "engine_spec", "get_engine", "register_engine"]
