"""Stage 2's load against the frauds the cascade catches, with intervals.

The ambiguous band is stage 2's load, and its cap (`band_max_share`) is the largest latency
lever found (docs/performance.md). Whether a narrower band costs caught fraud was measured by
training twice, without intervals. Here the same trained models have their cut-offs chosen
again for each cap (on the same validation days, `models.thresholds.Validation`) and the
cascade run on the same test rows, so the difference in caught fraud from the deployed cap
is paired, card by card, and carries its interval (`models.intervals.card_share`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.decision import Outcome, Route, Thresholds, cascade
from models.intervals import DEFAULT_REPLICATES, card_share

CAPS = (0.05, 0.1, 0.2, 0.3)


def band_sweep(
    choose: Callable[[float], Thresholds],
    xgb: np.ndarray,
    hybrid: np.ndarray,
    y: np.ndarray,
    customer: np.ndarray,
    deployed: float,
    caps: tuple[float, ...] = CAPS,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per cap (and the deployed one): the band's share of the test rows, the share of frauds
    not approved with its interval, and its paired difference from the deployed cap's."""
    y = np.asarray(y, dtype=bool)
    caught: dict[float, np.ndarray] = {}
    band: dict[float, float] = {}
    for cap in sorted({*caps, deployed}):
        routes, outcomes = cascade(xgb, hybrid, choose(cap))
        caught[cap], band[cap] = outcomes != Outcome.APPROVE, float((routes == Route.DEEP).mean())
    out = {}
    for cap, hit in caught.items():
        share = card_share(hit, y, customer, replicates, seed)
        diff = card_share(hit, y, customer, replicates, seed, minus=caught[deployed])
        out[f"{cap:g}"] = {
            "band_share": band[cap],
            "fraud_caught": share.point, "fraud_caught_low": share.low, "fraud_caught_high": share.high,
            "minus_deployed": diff.point, "minus_deployed_low": diff.low, "minus_deployed_high": diff.high,
        }  # fmt: skip
    return out
