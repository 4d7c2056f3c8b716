"""Decisions and buffer records written from columns are, byte for byte, the records of the
same rows as the codec encodes them one by one."""

from __future__ import annotations

import math
from typing import cast

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.decision import Outcome, Route
from stream.kafka.codec import Codec
from stream.kafka.columns import BufferColumns, DecisionColumns
from stream.records import Transaction
from stream.testing import sample_transaction

CODEC = Codec()
odd_floats = st.one_of(st.floats(width=32), st.floats(min_value=-1e300, max_value=1e300), st.just(math.inf), st.just(math.nan))
reason = st.tuples(st.text(max_size=10), odd_floats, st.floats(width=32, allow_nan=False))


def transactions(draw: st.DrawFn, n: int) -> list[Transaction]:
    ids, times = st.text(min_size=1, max_size=12), st.integers(0, 2**62)
    return [cast(Transaction, sample_transaction(k, transaction_id=draw(ids), event_time=draw(times))) for k in range(n)]


@st.composite
def columns(draw: st.DrawFn) -> DecisionColumns:
    n = draw(st.integers(1, 8))
    width = draw(st.sampled_from([0, 3, 31]))
    seq_width = draw(st.sampled_from([0, 5]))
    wide = draw(st.booleans())  # XGBoost's float32 probabilities, or doubles beyond float32's range
    scores = arrays(np.float64, n, elements=odd_floats) if wide else arrays(np.float32, n, elements=st.floats(width=32))
    txs = transactions(draw, n)
    return DecisionColumns(
        transactions=txs,
        outcomes=np.array(draw(st.lists(st.sampled_from(list(Outcome)), min_size=n, max_size=n)), dtype=np.int8),
        routes=np.array(draw(st.lists(st.sampled_from(list(Route)), min_size=n, max_size=n)), dtype=np.int8),
        scores=draw(scores),
        reasons=draw(st.lists(st.lists(reason, max_size=6), min_size=n, max_size=n)),
        source=draw(st.sampled_from(["xgb", "rules"])),
        model_version=draw(st.text(max_size=8)),
        arm=draw(st.text(max_size=4)),
        ingest_ms=np.array(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)), dtype=np.int64),
        decided_ms=draw(st.integers(0, 2**40)),
        features=draw(arrays(np.float32, (n, width), elements=st.floats(width=32))),
        feature_set_version=draw(st.text(max_size=6)),
        sequences=draw(arrays(np.float32, (n, seq_width), elements=st.floats(width=32))),
        sequence_version=draw(st.text(max_size=6)),
    )


@settings(max_examples=300, deadline=None)
@given(columns())
def test_columns_write_each_rows_decision_as_the_codec_encodes_it(cols: DecisionColumns) -> None:
    assert CODEC.encode_decisions(cols) == [CODEC.encode_decision(d) for d in cols.decisions()]


def test_a_row_reads_back_as_the_decision_it_was_built_from() -> None:
    tx = cast(Transaction, sample_transaction(7))
    cols = DecisionColumns([tx], np.array([Outcome.BLOCK]), np.array([Route.XGB_BLOCK]), np.array([0.75], np.float32),
                           [[("amount", 120.0, 0.5), ("velocity", math.nan, 0.25)]], "xgb", "v3", "B",
                           np.array([tx["event_time"] + 5]), tx["event_time"] + 12, np.ones((1, 2), np.float32), "fs2",
                           np.zeros((1, 0), np.float32), "seq1")  # fmt: skip
    (decision,) = [CODEC.decode_decision(raw) for raw in CODEC.encode_decisions(cols)]
    assert (decision.outcome, decision.route, decision.score, decision.xgb_score, decision.deep_score) == (
        Outcome.BLOCK, Route.XGB_BLOCK, 0.75, 0.75, None)  # fmt: skip
    assert [(r.feature, r.value, r.contribution, r.source) for r in decision.reasons] == [
        ("amount", 120.0, 0.5, "xgb"), ("velocity", None, 0.25, "xgb")]  # fmt: skip
    assert (decision.model_version, decision.arm, decision.latency_ms, decision.features) == ("v3", "B", 7.0, (1.0, 1.0))
    assert (decision.feature_set_version, decision.sequence, decision.sequence_version) == ("fs2", (), "")


@st.composite
def buffered(draw: st.DrawFn) -> BufferColumns:
    n = draw(st.integers(1, 6))
    txs = transactions(draw, n)
    trees, width, seq_width = draw(st.sampled_from([0, 1, 221])), draw(st.sampled_from([0, 31])), draw(st.sampled_from([0, 5]))
    leaf = st.integers(0, 300) | st.integers(-(2**31), 2**31 - 1)
    return BufferColumns(
        transactions=txs,
        features=draw(arrays(np.float32, (n, width), elements=st.floats(width=32))),
        feature_set_version=draw(st.text(max_size=6)),
        scores=draw(arrays(np.float64, n, elements=odd_floats)),
        margins=draw(arrays(np.float32, n, elements=st.floats(width=32))),
        leaves=draw(arrays(np.int64, (n, trees), elements=leaf)),
        model_version=draw(st.text(max_size=8)),
        arm=draw(st.text(max_size=4)),
        ingest_ms=np.array(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)), dtype=np.int64),
        scored_ms=draw(st.integers(0, 2**40)),
        partitions=np.array(draw(st.lists(st.integers(-1, 2**31 - 1), min_size=n, max_size=n))),
        offsets=np.array(draw(st.lists(st.integers(-1, 2**62), min_size=n, max_size=n))),
        sequences=draw(arrays(np.float32, (n, seq_width), elements=st.floats(width=32))),
        sequence_version=draw(st.text(max_size=6)),
    )


@settings(max_examples=200, deadline=None)
@given(buffered())
def test_columns_write_each_band_rows_record_as_the_codec_encodes_it(cols: BufferColumns) -> None:
    assert CODEC.encode_buffers(cols) == [CODEC.encode_buffer(r) for r in cols.records()]
