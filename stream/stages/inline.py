"""Both stages in one call, from the same pieces the live stages use (XGBoost margins,
`models.decision.cascade`, the deep model through `DeviceRunner`).

Used where there is no buffer topic in between: backtests and the shadow scorer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import xgb as xgbm
from models.artifacts import ModelBundle
from models.decision import AMBIGUOUS, Outcome, cascade, route
from stream.stages.runtime import DeviceRunner


@dataclass(frozen=True, slots=True)
class Scored:
    xgb_p: np.ndarray  # (n,) float32
    margin: np.ndarray  # (n,) float32
    deep_p: np.ndarray  # (n,) float32, NaN where stage 1 decided
    routes: np.ndarray  # (n,) int8 Route
    outcomes: np.ndarray  # (n,) int8 Outcome

    @property
    def score(self) -> np.ndarray:
        """The score each decision was taken on: hybrid in the band, XGBoost elsewhere."""
        return np.where(np.isnan(self.deep_p), self.xgb_p, self.deep_p).astype(np.float32)


def score_both(bundle: ModelBundle, runner: DeviceRunner, x: np.ndarray, seq: np.ndarray | None = None) -> Scored:
    """Stage 1 then stage 2 on the band, for feature rows x (n, F) and card sequences seq (n, ...),
    through `models.decision.cascade`."""
    th = bundle.thresholds
    margin = xgbm.margins(bundle.booster, x)
    p = xgbm.sigmoid(margin)
    band = route(p, th.approve_below, th.block_above) == AMBIGUOUS
    deep_p = np.full(len(p), np.nan, dtype=np.float32)
    if band.any():
        deep_p[band] = runner.scores(
            x[band], margin[band], xgbm.leaves(bundle.booster, x[band]), None if seq is None else seq[band]
        )
    routes, outcomes = cascade(p, deep_p, th)
    return Scored(p, margin, deep_p, routes, outcomes)


__all__ = ["Outcome", "Scored", "score_both"]
