"""Training engines behind one small interface (see ``base.Engine``)."""

from autokfp.training.base import ENGINES, Engine, EngineResult, Scorer, get_engine

__all__ = ["ENGINES", "Engine", "EngineResult", "Scorer", "get_engine"]
