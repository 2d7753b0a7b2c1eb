"""Monitoring: is the champion still right for the world it serves?

Modules: ``drift`` (per-column drift verdicts with Evidently's default methods, vectorised
with numpy), ``window`` (the champion's logged predictions for a time window, joined with
labels, and the training reference they are compared with), ``quality`` (checks of the
live inputs), ``anomaly`` (seasonal median + MAD on the monitoring histories),
``triggers`` (the retraining decision: a list of ``Trigger``s and their reasons) and
``history``. The steps are in ``autokfp.steps`` and the commands in ``autokfp.edge``.
"""

from autokfp.errors import AutokfpError


class MonitoringError(AutokfpError):
    """Monitoring cannot run: the message names what is missing and what to do."""


__all__ = ["MonitoringError"]
