"""Decisions carry what decided them; the audit tools reproduce it or say that they cannot."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Message

from models.featureset import FEATURE_NAMES, FEATURE_SET_VERSION, N_FEATURES
from stream.config import FallbackSettings, ScorerSettings, Topics
from stream.errors import ReproductionError
from stream.kafka.codec import Codec
from stream.ops.explain import CARRIED, explanation, require_reproduced
from stream.ops.provenance import warnings
from stream.records import Decision
from stream.stages.scorer import Scorer
from stream.stages.shadow import ShadowScorer
from stream.testing import FixedVersions, MemoryFeatureStore, sample_transaction, tiny_bundle

CODEC = Codec()
TOPICS = Topics()
BUNDLE = tiny_bundle(deep=True)
LOW, MID, HIGH = 1_000, 60_000, 95_000


def _transactions(amounts: list[int]) -> list[Message]:
    out = []
    for i, amount in enumerate(amounts):
        tx = sample_transaction(i, amount=amount)
        out.append(Message(topic=TOPICS.transactions, partition=0, offset=i, key=tx["customer_id"].encode(),
                           value=CODEC.encode("Transaction", tx), timestamp=(1, tx["event_time"])))  # fmt: skip
    return out


def _live(amounts: list[int]) -> tuple[list[Decision], MemoryFeatureStore]:
    store = MemoryFeatureStore()
    scorer = Scorer(CODEC, store, FixedVersions(BUNDLE), TOPICS, ScorerSettings(), FallbackSettings(), lambda: True)
    result = scorer.process(_transactions(amounts))
    return [CODEC.decode_decision(o.value) for o in result.outputs if o.topic == TOPICS.decisions], store


def _as_messages(decisions: list[Decision], topic: str) -> list[Message]:
    return [Message(topic=topic, partition=0, offset=i, key=d.transaction_id.encode(), value=CODEC.encode_decision(d),
                    timestamp=(1, d.decided_at)) for i, d in enumerate(decisions)]  # fmt: skip


def test_stage_one_decisions_carry_the_features_they_were_scored_on() -> None:
    decided, _ = _live([LOW, HIGH, LOW, HIGH])
    assert len(decided) == 4
    offline = MemoryFeatureStore().features([sample_transaction(i, amount=a) for i, a in enumerate([LOW, HIGH, LOW, HIGH])])
    for d, row in zip(decided, offline.features, strict=True):
        assert d.feature_set_version == FEATURE_SET_VERSION and len(d.features) == N_FEATURES
        np.testing.assert_array_equal(np.array(d.features, dtype=np.float32), row)


def test_shadow_of_the_live_version_decides_what_live_decided_and_skips_what_had_no_features() -> None:
    decided, _ = _live([LOW, HIGH, LOW, HIGH, LOW])
    without = dataclasses.replace(decided[0], transaction_id="no-features", features=(), feature_set_version="")
    shadow = ShadowScorer(CODEC, BUNDLE, TOPICS, (8, 64))
    out = shadow.process(_as_messages([*decided, without], TOPICS.decisions))
    got = {d.transaction_id: d for d in (CODEC.decode_decision(o.value) for o in out.outputs)}
    assert {o.topic for o in out.outputs} == {TOPICS.shadow}
    assert set(got) == {d.transaction_id for d in decided}  # the one without features is not shadowed
    for d in decided:
        s = got[d.transaction_id]
        assert (s.outcome, s.route, s.arm) == (d.outcome, d.route, "shadow")
        assert s.score == pytest.approx(d.score, abs=1e-6)
        np.testing.assert_array_equal(np.array(s.features), np.array(d.features))


def test_explanation_reproduces_a_published_score_and_refuses_one_it_does_not_give() -> None:
    decided, _ = _live([HIGH])
    d = decided[0]
    e = explanation(d, BUNDLE, np.array(d.features, dtype=np.float32), CARRIED)
    assert e.reproduced and [c.name for c in e.checks] == ["XGBoost score"]
    assert e.xgb.additivity_error < 1e-3
    require_reproduced(e)
    assert e.warnings() == ["the transaction itself is no longer on the topic in the range searched"]
    wrong = explanation(dataclasses.replace(d, xgb_score=0.5), BUNDLE, np.array(d.features, dtype=np.float32), CARRIED)
    assert not wrong.reproduced
    with pytest.raises(ReproductionError, match=r"XGBoost score published 0\.500000, recomputed"):
        require_reproduced(wrong)
    # a rebuild that differs from what live saw is named feature by feature
    rebuilt = np.array(d.features, dtype=np.float32)
    rebuilt[1] += 3
    shifted = explanation(d, BUNDLE, np.array(d.features, dtype=np.float32), CARRIED, sample_transaction(0), rebuilt)
    assert [f for f, *_ in shifted.rebuild_differences()] == [FEATURE_NAMES[1]]
    assert any("rebuilding from the topic alone gives other values for 1 feature" in w for w in shifted.warnings())


def _metrics(**changes: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "window": {"transactions": 100},
        "range": {"warm_up_transactions": 50},
        "features": {"scored_on_live_features": 100, "scored_on_rebuilt_features": 0, "rebuilt_equals_live": 1.0,
                     "rebuilt_differs_by_feature": {}},
        "labels": {"mature_share": 1.0, "label_delay_days": 7, "window_frauds_labelled": 3},
        "live": {"missing": 0, "degraded": 0},
    }  # fmt: skip
    for key, value in changes.items():
        section, field = key.split("__")
        m[section][field] = value
    return m


def test_a_complete_backtest_has_no_warnings_and_each_gap_is_named() -> None:
    assert warnings(_metrics()) == []
    cases = {
        "no any warm-up": (
            _metrics(range__warm_up_transactions=0, features__scored_on_rebuilt_features=10),
            "rebuilt without any warm-up",
        ),
        "rebuild differs": (
            _metrics(features__rebuilt_equals_live=0.5, features__rebuilt_differs_by_feature={"cust_n_30d": 50}),
            "reproduces live's features for only 50.0%",
        ),
        "young labels": (_metrics(labels__mature_share=0.2), "labels are mature for only 20.0%"),
        "no fraud": (_metrics(labels__window_frauds_labelled=0), "no fraud label"),
        "missing": (_metrics(live__missing=4), "4 window transactions have no published decision"),
        "degraded": (_metrics(live__degraded=7), "7 live decisions were taken degraded"),
    }
    for name, (m, text) in cases.items():
        got = warnings(m)
        assert len(got) == 1 and text in got[0], name
