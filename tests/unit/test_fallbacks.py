"""Circuit breaker (driven by a fake clock) and the rules fallback."""

from __future__ import annotations

import numpy as np

from models.decision import Outcome
from models.featureset import FEATURE_NAMES
from models.rules import DEFAULT_RULES, Rule, evaluate
from stream.stages.breaker import CircuitBreaker, State
from stream.testing import FakeClock, sample_transaction


def test_breaker_opens_after_failures_and_half_opens_after_reset() -> None:
    clock = FakeClock()
    b = CircuitBreaker("redis", failure_threshold=2, reset_after_s=5.0, clock=clock)
    b.failure()
    assert b.allow()
    b.failure()
    assert b.state is State.OPEN and not b.allow()
    clock.advance(4.9)
    assert not b.allow()
    clock.advance(0.2)
    assert b.state is State.HALF_OPEN  # type: ignore[comparison-overlap]  # the clock moved it
    assert b.allow()
    b.failure()  # the trial failed: open again at once
    assert b.state is State.OPEN
    clock.advance(5.0)
    b.success()
    assert b.state is State.CLOSED and b.failures == 0


def _features(device_new: list[float]) -> np.ndarray:
    x = np.zeros((len(device_new), len(FEATURE_NAMES)), dtype=np.float32)
    x[:, FEATURE_NAMES.index("device_new")] = device_new
    return x


def test_rules_first_match_wins_and_no_match_approves_when_every_rule_could_run() -> None:
    events = [
        sample_transaction(0, amount=250_000),  # very large
        sample_transaction(1, amount=40_000, channel="POS"),  # new device below
        sample_transaction(2, amount=60_000, channel="ECOM"),  # large online
        sample_transaction(3, amount=1_000),
    ]
    out, names = evaluate(DEFAULT_RULES, events, _features([0, 1, 0, 0]))
    assert out.tolist() == [Outcome.REVIEW, Outcome.REVIEW, Outcome.REVIEW, Outcome.APPROVE]
    assert names == ["very_large_amount", "new_device_large_amount", "large_online_amount", None]


def test_rules_without_features_never_approve_by_omission() -> None:
    events = [sample_transaction(0, amount=250_000), sample_transaction(3, amount=1_000)]
    out, names = evaluate(DEFAULT_RULES, events, None)
    assert out.tolist() == [Outcome.REVIEW, -1]  # -1: the safe default applies
    assert names == ["very_large_amount", None]
    event_only = (Rule(name="big", outcome="BLOCK", min_amount=100_000),)
    out, _ = evaluate(event_only, events, None)
    assert out.tolist() == [Outcome.BLOCK, Outcome.APPROVE]
