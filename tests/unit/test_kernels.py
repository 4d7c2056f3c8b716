"""The compiled batch kernels against their pure-Python references, bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.card import append, changed_buckets, empty_card, ring_before, ring_records, stack, updated
from models.featureset import CARD_DTYPE, HISTORY_DTYPE, RING_RECORDS
from models.kernels import append_many
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
