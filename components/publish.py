"""``publish`` moved to ``autokfp.steps.results`` (component bodies import only ``autokfp``).

Kept so that YAML compiled before the move, whose component bodies import
``components.publish``, still runs on newer images.
"""

from autokfp.steps.results import publish

__all__ = ["publish"]
