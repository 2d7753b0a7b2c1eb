"""Training engines behind one small interface (``base.Engine``), found through
``autokfp.engine_registry`` (re-exported here for engine authors)."""

from autokfp.engine_registry import (
    EngineSettings,
    EngineSpec,
    default_engines,
    engine_names,
    engine_spec,
    get_engine,
    register_engine,
)
from autokfp.training.base import Engine, EngineResult, FrameScorer, Scorer

__all__ = ["Engine", "EngineResult", "EngineSettings", "EngineSpec", "FrameScorer", "Scorer",
           "default_engines", "engine_names", "engine_spec", "get_engine", "register_engine"]
