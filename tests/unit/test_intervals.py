"""Paired card-bootstrap intervals: noise stays noise, a real gain shows, the seed fixes it."""

from __future__ import annotations

import numpy as np

from models.intervals import card_bootstrap, card_share
from models.units import DAY_MS


def _data(seed: int = 0, n: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cards = rng.integers(0, 400, n).astype(str)
    fraud_cards = set(np.unique(cards)[:20])
    y = np.array([c in fraud_cards for c in cards]) & (rng.random(n) < 0.5)
    event_time = np.sort(rng.integers(0, 7 * DAY_MS, n))
    score = rng.random(n) + 0.6 * y
    return y, score, event_time, cards


def test_a_model_against_itself_differs_by_exactly_nothing() -> None:
    y, s, et, cards = _data()
    boot = card_bootstrap(y, {"xgboost": s, "hybrid": s.copy()}, et, cards, replicates=30)
    for k, d in boot.differences["hybrid"].items():
        assert (d.point, d.low, d.high) == (0.0, 0.0, 0.0), k
        assert not d.excludes_zero()
    auc = boot.metrics["xgboost"]["auc_roc"]
    assert auc.low < auc.point < auc.high and boot.cards == len(np.unique(cards))


def test_noise_added_to_a_score_is_not_called_a_gain_and_a_real_gain_is() -> None:
    y, s, et, cards = _data()
    rng = np.random.default_rng(1)
    noisy = s + rng.normal(0, 0.01, len(s))
    better = s + 0.8 * y
    boot = card_bootstrap(y, {"xgboost": s, "noisy": noisy, "better": better}, et, cards, replicates=60)
    assert boot.differences["noisy"]["auc_roc"].low <= 0 <= boot.differences["noisy"]["auc_roc"].high
    gain = boot.differences["better"]["average_precision"]
    assert gain.excludes_zero() and gain.low > 0


def test_the_same_seed_gives_the_same_intervals() -> None:
    y, s, et, cards = _data()
    scores = {"xgboost": s, "hybrid": s + 0.1 * y}
    a = card_bootstrap(y, scores, et, cards, replicates=20, seed=3).to_dict()
    b = card_bootstrap(y, scores, et, cards, replicates=20, seed=3).to_dict()
    c = card_bootstrap(y, scores, et, cards, replicates=20, seed=4).to_dict()
    assert a == b and a != c


def test_a_share_of_frauds_has_a_wider_interval_when_its_frauds_sit_on_fewer_cards() -> None:
    """Half the frauds caught either way; caught card by card (a card's frauds all caught or
    all missed) on 20 cards is far less certain than half of each of 200 cards' frauds."""
    spread_cards = np.repeat(np.arange(200), 2).astype(str)
    spread_hit = np.tile([True, False], 200)
    few_cards = np.repeat(np.arange(20), 20).astype(str)
    few_hit = np.repeat(np.arange(20) % 2 == 0, 20)
    frauds = np.ones(400, dtype=bool)
    spread = card_share(spread_hit, frauds, spread_cards)
    few = card_share(few_hit, frauds, few_cards)
    assert spread.point == few.point == 0.5
    assert spread.low == spread.high == 0.5  # every card caught exactly half: no card-level doubt
    assert few.low < 0.35 and few.high > 0.65
    assert np.isnan(card_share(frauds, np.zeros(400, dtype=bool), spread_cards).point)  # no frauds: no share
