"""The tree walk (compiled, and its numpy reference): the same leaves and bit-identical margins as XGBoost."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from models import xgb as xgbm
from stream.config import FallbackSettings
from stream.stages.guards import GuardedXGBoost
from stream.testing import FakeClock
from stream.testing.stages import tiny_bundle


def _booster(objective: str, seed: int = 0) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values teach default directions
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) > 0.5).astype(np.float32)
    params = {"objective": objective, "max_depth": 5, "eta": 0.3, "tree_method": "hist", "nthread": 1, "seed": seed}
    return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=40)


@pytest.mark.parametrize("seed", [0, 1])
def test_forest_matches_xgboost_bit_for_bit(seed: int) -> None:
    booster = _booster("binary:logistic", seed)
    forest = xgbm.Forest.build(booster, 6)
    assert forest is not None
    x = forest.probe_rows(n=4000, seed=seed + 10)  # on, just below and just above every threshold
    whole = xgbm.margins(booster, x)
    for size in (1, 2, 7, 64):  # micro-batch sizes (a sum over one row must not be pairwise either)
        for start in range(0, 300, 13):
            m, leaves = forest.predict(x[start : start + size])
            np.testing.assert_array_equal(m, whole[start : start + size])
    m, leaves = forest.predict(x)
    np.testing.assert_array_equal(m, whole)
    np.testing.assert_array_equal(leaves, xgbm.leaves(booster, x))
    assert leaves.dtype == np.int32 and m.dtype == np.float32
    ref_m, ref_leaves = forest.walk_numpy(x)  # the compiled walk against the numpy reference
    assert ref_m.tobytes() == m.tobytes() and ref_leaves.tobytes() == leaves.tobytes()


def test_forest_rejects_rows_of_another_width() -> None:
    forest = xgbm.Forest.build(_booster("binary:logistic"), 6)
    assert forest is not None
    with pytest.raises(ValueError, match="expect"):
        forest.predict(np.zeros((2, 7), dtype=np.float32))


def test_forest_declines_what_it_does_not_cover() -> None:
    # Another objective maps base_score to a margin differently: XGBoost keeps those.
    assert xgbm.Forest.build(_booster("reg:squarederror"), 6) is None


@pytest.mark.parametrize(("threads", "rows", "walked"), [(1, 500, True), (1, 3, True), (4, 3, True), (4, 500, False)])
def test_one_thread_walks_every_batch_and_more_threads_leave_big_ones_to_xgboost(threads: int, rows: int, walked: bool) -> None:
    bundle = tiny_bundle()
    assert bundle.forest is not None
    guard = GuardedXGBoost(FallbackSettings(), FakeClock(), threads)
    x = bundle.forest.probe_rows(n=rows)
    scored = guard.score(bundle, x).value
    assert scored is not None
    assert (scored.leaves is not None) == walked  # the walk gives leaves with the margins; XGBoost's call does not
    np.testing.assert_array_equal(scored.margin, xgbm.margins(bundle.booster, x))
