"""The compiled batch kernels against their pure-Python references, bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.card import CardTable, append, changed_buckets, empty_card, ring_before, ring_records, stack, updated
from models.features import FeatureEngine
from models.featureset import (
    CARD_DTYPE,
    HISTORY_DTYPE,
    N_FEATURES,
    RING_DAYS,
    RING_DTYPE,
    RING_RECORDS,
    ring_from_bytes,
    rings_from_bytes,
)
from models.history import Events
from models.kernels import append_many
from models.sequence import N_SEQ, SEQ_LEN
from models.units import DAY_MS

T0 = 1_767_225_600_000


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, np.ndarray, np.ndarray]:
    """A few cards and records for them: repeated ids, late and far-apart days, NaN places."""
    cards = draw(st.integers(1, 4))
    n = draw(st.integers(0, 3 * RING_RECORDS))
    owner = np.array(draw(st.lists(st.integers(0, cards - 1), min_size=n, max_size=n)), dtype=np.int64)
    records = np.zeros(n, dtype=HISTORY_DTYPE)
    records["tx"] = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n)) if n else []
    records["ts"] = [T0 + d * DAY_MS for d in draw(st.lists(st.integers(-40, 80), min_size=n, max_size=n))] if n else []
    records["amount"] = draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)) if n else []
    records["lat"] = draw(st.lists(st.sampled_from([np.nan, 48.5, -10.25]), min_size=n, max_size=n)) if n else []
    records["dev"] = draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)) if n else []
    records["src"] = draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)) if n else []
    return cards, owner, records


@settings(max_examples=300, deadline=None)
@given(batches(), st.integers(0, 2))
def test_append_many_equals_append_record_by_record(batch: tuple[int, np.ndarray, np.ndarray], rounds: int) -> None:
    cards, owner, records = batch
    ref = [empty_card() for _ in range(cards)]
    mine = np.zeros(cards, dtype=CARD_DTYPE)
    for _ in range(rounds + 1):  # again: the ids are now in the rings
        added = sum(append(ref[int(u)], records[i : i + 1]) for i, u in enumerate(owner))
        assert append_many(mine, owner, records) == added
        assert mine.tobytes() == b"".join(c.tobytes() for c in ref)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_ring_records_and_changed_buckets_match_the_one_card_helpers(batch: tuple[int, np.ndarray, np.ndarray]) -> None:
    cards, owner, records = batch
    state = {f"c{u}": empty_card() for u in range(cards)}
    for i, u in enumerate(owner):
        append(state[f"c{int(u)}"], records[i : i + 1])
    held, stored = ring_records(stack(list(state.values())))
    expected = [ring_before(c) for c in state.values()]
    assert held.tolist() == [len(r) for r in expected]
    assert stored.tobytes() == b"".join(r.tobytes() for r in expected)
    more = dict.fromkeys(state, records[:3])  # the first ids again, and the rest new to the card
    before, after = updated(state, more)
    counts, entries = changed_buckets(before, after)
    at = 0
    for j, (c, card) in enumerate(state.items()):
        alone = card.copy()
        append(alone, more[c])
        assert after[j : j + 1].tobytes() == alone.tobytes()
        changed = entries[at : at + 17 * int(counts[j])]
        at += len(changed)
        days = [changed[k] for k in range(0, len(changed), 17)]
        assert days == sorted(set(np.flatnonzero(card["days"][0] != alone["days"][0]).tolist()))
        assert all(changed[k + 1 : k + 17] == alone["days"][0][changed[k]].tobytes() for k in range(0, len(changed), 17))
    assert at == len(entries)


@st.composite
def card_batches(draw: st.DrawFn) -> tuple[np.ndarray, Events, np.ndarray]:
    """Cards with histories (rings full or not, day buckets) and a batch of events for them:
    late events, ids already in a ring, repeated devices, missing and non-finite places."""
    n_cards = draw(st.integers(1, 4))
    cards = np.zeros(n_cards, dtype=CARD_DTYPE)
    for u in range(n_cards):
        _, _, records = draw(batches())
        records["ts"] = np.sort(records["ts"])
        records["tx"] += np.uint64(1000 * (u + 1))
        records["lon"] = np.where(np.isnan(records["lat"]), np.nan, 2.5)
        records["dev"] %= np.uint64(draw(st.integers(1, 4)))
        append_many(cards[u : u + 1], np.zeros(len(records), np.int64), records)
    n = draw(st.integers(1, 3 * RING_RECORDS))
    cust = np.array(draw(st.lists(st.integers(0, n_cards - 1), min_size=n, max_size=n)), dtype=np.int64)
    late = draw(st.integers(0, 3)) == 0
    step = st.integers(-3 * DAY_MS if late else 0, DAY_MS)
    ts = T0 + 90 * DAY_MS + np.cumsum(draw(st.lists(step, min_size=n, max_size=n)))
    tx = np.arange(n, dtype=np.uint64) + np.uint64(10**6)
    if draw(st.integers(0, 3)) == 0:  # an id already in its card's ring, or twice in the batch
        tx[draw(st.integers(0, n - 1))] = draw(st.sampled_from([1001, 2002, 10**6]))
    pick = st.lists(st.sampled_from([np.nan, 48.25, 48.5]), min_size=n, max_size=n)
    ev = Events(
        ts=ts.astype(np.int64),
        amount=np.array(draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)), dtype=np.int64),
        lat=np.array(draw(pick)),
        lon=np.array(draw(st.lists(st.sampled_from([np.nan, 2.0, 2.5]), min_size=n, max_size=n))),
        dev=np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.uint64),
        tx=tx,
        src=np.ones(n, np.uint64),
    )
    return cards, ev, cust


@settings(max_examples=300, deadline=None)
@given(card_batches())
def test_the_compiled_card_reads_give_the_numpy_reference_features_bit_for_bit(
    batch: tuple[np.ndarray, Events, np.ndarray],
) -> None:
    cards, ev, cust = batch
    got = []
    for compiled in (True, False):
        out = np.full((len(cust), N_FEATURES), np.nan)
        seqs = np.full((len(cust), SEQ_LEN, N_SEQ), -1.0)
        appended = FeatureEngine(7, compiled=compiled)._vectorised(ev, cust, cards, out, seqs)
        got.append((appended, out.tobytes(), seqs.tobytes()))
    (appended, x, seq), (ref_appended, ref_x, ref_seq) = got
    assert (appended is None) == (ref_appended is None)
    if ref_appended is not None:
        assert appended == ref_appended
        assert x == ref_x  # float64, before the float32 the models read
        assert seq == ref_seq


@settings(max_examples=100, deadline=None)
@given(batches(), st.lists(st.integers(0, 3 * 64 * 4), max_size=5).map(lambda ns: [n - n % 4 for n in ns]))
def test_cards_and_rings_read_together_equal_each_read_alone(batch: tuple[int, np.ndarray, np.ndarray], cuts: list[int]) -> None:
    cards, owner, records = batch
    state = {f"c{u}": empty_card() for u in range(cards)}
    for i, u in enumerate(owner):
        append(state[f"c{int(u)}"], records[i : i + 1])
    table = CardTable(list(state), [c.tobytes() for c in state.values()])
    ids = ["nobody", *reversed(state), "c0"]
    assert table.rows(ids).tobytes() == stack([state.get(c) for c in ids]).tobytes()
    assert {c: table[c].tobytes() for c in table} == {c: k.tobytes() for c, k in state.items()}
    full = np.arange(RING_DAYS * 3, dtype=RING_DTYPE).tobytes()
    blobs = [full[:n] for n in cuts]  # a ring's string stops after its last written slot
    assert rings_from_bytes(blobs).tobytes() == b"".join(ring_from_bytes(b).tobytes() for b in blobs)
