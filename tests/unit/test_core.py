"""Pure pieces: routing, arms, micro-batching, metrics, config, and the import rules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.decision import AMBIGUOUS, Arm, Outcome, Route, Thresholds, assign_arms, deep_outcomes, route, top_reasons
from models.evaluation import auc_roc, average_precision, card_precision_at_k, recall_at_budget
from stream.config import load_settings
from stream.errors import ConfigError
from stream.kafka.batching import collect
from stream.kafka.codec import Codec
from stream.testing import FakeClock, sample_transaction

REPO = Path(__file__).resolve().parents[2]


def test_route_by_band() -> None:
    p = np.array([0.001, 0.01, 0.5, 0.9, 0.95], dtype=np.float32)
    got = route(p, np.full(5, 0.01, np.float32), np.full(5, 0.9, np.float32))
    assert got.tolist() == [Route.XGB_APPROVE, AMBIGUOUS, AMBIGUOUS, Route.XGB_BLOCK, Route.XGB_BLOCK]


def test_deep_outcomes() -> None:
    got = deep_outcomes(np.array([0.1, 0.5, 0.99]), Thresholds(0.1, 0.9, 0.4, 0.95, 0.5))
    assert got.tolist() == [Outcome.APPROVE, Outcome.REVIEW, Outcome.BLOCK]


def test_arms_are_stable_and_follow_shares() -> None:
    arms = [Arm("A", 0.9, "v1"), Arm("B", 0.1, "v2")]
    ids = [f"c-{i}" for i in range(5000)]
    first = assign_arms(ids, arms)
    assert np.array_equal(first, assign_arms(ids, arms))
    assert 0.07 < first.mean() < 0.13


def test_top_reasons_keep_positive_contributions_only() -> None:
    contrib = np.array([[0.5, -1.0, 2.0, 0.0, 0.1, 0.3]])
    values = np.arange(6, dtype=np.float32)[None, :]
    (reasons,) = top_reasons(contrib, values, ["a", "b", "c", "d", "e", "f"])
    assert [r[0] for r in reasons] == ["c", "a", "f", "e"]


class FakeTopic:
    """Records arrive in bursts, one burst per consume call; consume returns at most n."""

    def __init__(self, clock: FakeClock, bursts: list[list[int]]) -> None:
        self.clock, self.bursts, self.ready, self.asked, self.slept = clock, bursts, [], [], []

    def consume(self, n: int, timeout: float) -> list[int]:
        self.asked.append((n, timeout))
        self.clock.advance(0.0001)
        if self.bursts:
            self.ready.extend(self.bursts.pop(0))
        got, self.ready = self.ready[:n], self.ready[n:]
        return got

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


def test_micro_batch_stops_at_rows_or_wait() -> None:
    clock = FakeClock()
    topic = FakeTopic(clock, [[1, 2], [3], [4, 5, 6]])
    assert collect(topic.consume, max_rows=3, max_wait_s=1.0, clock=clock, sleep=topic.sleep) == [1, 2, 3]
    assert topic.asked[0] == (1, 0.2)  # the first record is asked for alone: it returns on arrival
    assert all(timeout == 0.0 for _, timeout in topic.asked[1:])  # the rest is taken without waiting in consume
    assert topic.slept == []  # the take after the first record filled the batch

    topic = FakeTopic(clock, [[1], [], [2]])
    got = collect(topic.consume, max_rows=100, max_wait_s=0.01, clock=clock, sleep=topic.sleep)
    assert got == [1, 2]  # what arrived during the wait is taken once the wait is over
    assert sum(topic.slept) == pytest.approx(0.01 - 0.0001)  # never held past max_wait after the first record

    topic = FakeTopic(clock, [[1, 2, 3, 4, 5]])
    assert collect(topic.consume, max_rows=3, max_wait_s=1.0, clock=clock, sleep=topic.sleep) == [1, 2, 3]
    assert topic.slept == []  # a full batch is there: no wait at all
    assert collect(FakeTopic(clock, []).consume, max_rows=10, max_wait_s=0.01, clock=clock, sleep=topic.sleep) == []

    topic = FakeTopic(clock, [[1], [2, 3], [4]])
    assert collect(topic.consume, max_rows=10, max_wait_s=0.0, clock=clock, sleep=topic.sleep) == [1, 2, 3]
    assert topic.slept == [] and len(topic.asked) == 2  # no wait: the first record, then one take of what is queued


def test_batch_settings_keep_each_stage_defaults() -> None:
    s = load_settings(environ={"FRAUDSTREAM_DEEP__BATCH__MAX_WAIT_MS": "5", "FRAUDSTREAM_LABELS__BATCH__MAX_ROWS": "10"})
    assert (s.deep.batch.max_rows, s.deep.batch.max_wait_ms) == (256, 5)  # not stage 1's 2000
    assert (s.labels.batch.max_rows, s.labels.batch.max_wait_ms) == (10, 100)
    assert s.scorer.batch.max_rows == 2000
    # No wait configured: a short one per transaction exactly-once, none at-least-once.
    assert (s.scorer.batch.wait_s(True), s.scorer.batch.wait_s(False)) == (0.002, 0.0)
    assert (s.deep.batch.wait_s(True), s.deep.batch.wait_s(False)) == (0.005, 0.005)


def test_metrics_on_hand_computed_cases() -> None:
    y = np.array([0, 0, 1, 1], dtype=bool)
    assert auc_roc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert average_precision(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx((1 + 2 / 3) / 2)
    assert recall_at_budget(y, np.array([0.1, 0.4, 0.35, 0.8]), budget=0.25) == pytest.approx(0.5)
    t = np.array([0, 0, 86_400_000, 86_400_000])
    cards = np.array(["a", "b", "a", "b"])
    # day 0: top-1 card is b (0.4), not fraud; day 1: top card b (0.8), fraud
    assert card_precision_at_k(t, cards, y, np.array([0.1, 0.4, 0.35, 0.8]), k=1) == pytest.approx(0.5)


def test_unknown_and_mistyped_config_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'scorer.batch.max_rowz'")):
        load_settings(environ={"FRAUDSTREAM_SCORER__BATCH__MAX_ROWZ": "5"})
    with pytest.raises(ConfigError, match=re.escape("config key 'deep.gpu_memory_fraction'")):
        load_settings(environ={"FRAUDSTREAM_DEEP__GPU_MEMORY_FRACTION": "1.5"})
    with pytest.raises(ConfigError, match=re.escape("config key 'kafka.processing'")):
        load_settings(environ={"FRAUDSTREAM_KAFKA__PROCESSING": "twice"})
    s = load_settings(environ={"FRAUDSTREAM_KAFKA_BOOTSTRAP": "h:1", "FRAUDSTREAM_KAFKA__PROCESSING": "at_least_once"})
    assert s.kafka.bootstrap == "h:1" and not s.kafka.exactly_once
    arms = load_settings(environ={"FRAUDSTREAM_ARMS": "[{name: A, share: 1}, {name: B, share: 1, model_version: v2}]"}).arms
    assert [(a.name, a.model_version) for a in arms] == [("A", None), ("B", "v2")]
    assert load_settings(environ={"FRAUDSTREAM_LOG_FORMAT": "json"}).log_format == "json"
    assert s.kafka.consumer_config("g")["isolation.level"] == "read_committed"


GOOD = Codec().encode("Transaction", sample_transaction(5))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_the_batch_decoder(raw: bytes) -> None:
    batch = Codec().decode_values("Transaction", [raw, GOOD])
    assert len(batch.oks) + len(batch.errs) == 2
    assert batch.oks[-1].value["transaction_id"] == "tx-00000005"


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.integers(0, len(GOOD)))
def test_mutated_records_never_escape_the_batch_decoder(pos: int, byte: int, cut: int) -> None:
    mutated = (GOOD[:pos] + bytes([byte]) + GOOD[pos + 1 :])[:cut]
    batch = Codec().decode_values("Transaction", [mutated])
    assert len(batch.oks) + len(batch.errs) == 1
    for f in batch.errs:
        assert f.raw == mutated and f.reason


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((REPO / "models").glob("*.py")), ids=lambda p: p.name)
def test_models_import_no_kafka_redis_or_stream(path: Path) -> None:
    assert not _imports(path) & {"confluent_kafka", "redis", "stream"}


def test_a_batch_grows_while_the_one_before_commits_up_to_its_rows() -> None:
    """Past its wait, a batch keeps taking what arrives while the batch before is committing
    (it could not commit sooner), and stops at max_rows or once that commit ended."""
    clock = FakeClock()
    ends = clock() + 0.01  # the commit in flight ends 10 ms from now
    topic = FakeTopic(clock, [[1], [], [2], [], [3], [4], [], [5]])
    got = collect(topic.consume, max_rows=100, max_wait_s=0.001, clock=clock, sleep=topic.sleep, busy=lambda: clock() < ends)
    assert got[0] == 1 and len(got) > 1 and clock() >= ends and clock() < ends + 0.002
    topic = FakeTopic(clock, [[1], [2], [3], [4], [5], [6]])
    assert collect(topic.consume, max_rows=3, max_wait_s=0.0, clock=clock, sleep=topic.sleep, busy=lambda: True) == [1, 2, 3]
