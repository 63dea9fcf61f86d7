"""Replay of a query bag through the localizer without DDS (``offline``) and the evaluation report
(``report``: metrics.json, summary.md, plots) that the offline and the DDS replay share."""

from .offline import ReplayOutcome, replay_offline

__all__ = ["ReplayOutcome", "replay_offline"]
