"""The band sweep: cut-offs chosen again per cap on the same validation days, the cascade on
the same test rows, caught fraud paired against the deployed cap."""

from __future__ import annotations

import numpy as np

from models.bandsweep import band_sweep
from models.decision import Thresholds
from models.thresholds import Validation


def _scores(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = rng.random(n) < 0.05
    xgb = np.clip(rng.normal(0.2 + 0.4 * y, 0.15), 0, 1)
    hybrid = np.clip(rng.normal(0.2 + 0.5 * y, 0.15), 0, 1)
    return y, xgb, hybrid


def test_the_deployed_cap_differs_from_itself_by_nothing_and_wider_caps_widen_the_band() -> None:
    rng = np.random.default_rng(1)
    y_val, xgb_val, hybrid_val = _scores(rng, 20_000)
    val = Validation(y_val, xgb_val, y_val[:8000], xgb_val[:8000], hybrid_val[:8000])

    def choose(cap: float) -> Thresholds:
        return val.thresholds(cap, 0.05, 0.9, 0.01)

    y, xgb, hybrid = _scores(rng, 10_000)
    cards = rng.integers(0, 2000, len(y)).astype(str)
    sweep = band_sweep(choose, xgb, hybrid, y, cards, deployed=0.2, replicates=50)
    assert set(sweep) == {"0.05", "0.1", "0.2", "0.3"}
    deployed = sweep["0.2"]
    assert deployed["minus_deployed"] == deployed["minus_deployed_low"] == deployed["minus_deployed_high"] == 0.0
    bands = [sweep[k]["band_share"] for k in ("0.05", "0.1", "0.2", "0.3")]
    assert bands == sorted(bands) and bands[0] <= 0.07
    for row in sweep.values():
        assert row["fraud_caught_low"] <= row["fraud_caught"] <= row["fraud_caught_high"]
        assert abs(row["minus_deployed"] - (row["fraud_caught"] - deployed["fraud_caught"])) < 1e-12
