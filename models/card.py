"""A card's feature state: one fixed-size `CARD_DTYPE` record, whatever the card's age.

Records are numbered from 0 in arrival order (`seq` counts them). Record s lives in ring
slot s % RING_RECORDS until record s + RING_RECORDS takes the slot; it then moves into the
bucket of its UTC day (slot day % DAY_BUCKETS; a slot holding an older day is reset first,
one holding a later day drops the record, which is too old to be read). So the state holds
each record once, in the ring with its details or in its day's bucket as a count and an
amount, and the windows counted by whole days read the same from either. That is what lets
a batch redone after a crash see the state it saw the first time: leave out of the ring its
records and those after them (`ring_before`), keep the buckets.

Appending a transaction id already in the ring does nothing: updates are idempotent per
transaction id. `stream.state.scripts.WRITE_BATCH` applies the same rules inside Redis.
"""

from __future__ import annotations

import numpy as np

from models.featureset import BUCKET_DTYPE, CARD_DTYPE, DAY_BUCKETS, EMPTY_HISTORY, HISTORY_DTYPE, RING_RECORDS
from models.units import DAY_MS

CARD_BYTES = CARD_DTYPE.itemsize
EMPTY_BUCKETS = np.zeros(DAY_BUCKETS, dtype=BUCKET_DTYPE)


def empty_card() -> np.ndarray:
    """The state of a card never seen: a (1,) CARD_DTYPE array (mutable in place)."""
    return np.zeros(1, dtype=CARD_DTYPE)


def card_from_bytes(blob: bytes) -> np.ndarray:
    """A card from its stored bytes (a copy, so it can be updated)."""
    if len(blob) != CARD_BYTES:
        raise ValueError(f"a card state is {CARD_BYTES} bytes, this one {len(blob)}")
    return np.frombuffer(blob, dtype=CARD_DTYPE).copy()


def ring_before(card: np.ndarray, seq: int | None = None) -> np.ndarray:
    """The ring's records numbered below `seq` (default: all), oldest first."""
    count = int(card["seq"][0])
    end = count if seq is None else min(seq, count)
    start = max(0, count - RING_RECORDS)
    if end <= start:
        return EMPTY_HISTORY
    ring: np.ndarray = card["ring"][0]
    records: np.ndarray = ring[np.arange(start, end) % RING_RECORDS]
    return records


def find(card: np.ndarray, tx: int) -> int | None:
    """The number of the ring record with transaction id hash `tx`, if any."""
    count = int(card["seq"][0])
    seqs = np.arange(max(0, count - RING_RECORDS), count)
    hits = seqs[card["ring"][0]["tx"][seqs % RING_RECORDS] == tx]
    return int(hits[0]) if hits.size else None


def append(card: np.ndarray, records: np.ndarray) -> int:
    """Append HISTORY_DTYPE records in order, skipping ids already in the ring; returns how many."""
    ring, days = card["ring"][0], card["days"][0]
    added = 0
    for rec in records:
        if find(card, int(rec["tx"])) is not None:
            continue
        seq = int(card["seq"][0])
        slot = seq % RING_RECORDS
        if seq >= RING_RECORDS:
            to_bucket(days, int(ring[slot]["ts"]), int(ring[slot]["amount"]))
        ring[slot] = rec
        card["seq"][0] = seq + 1
        added += 1
    return added


def to_bucket(days: np.ndarray, ts: int, amount: int) -> None:
    """Count a record leaving the ring into its day's bucket."""
    day = ts // DAY_MS
    bucket = days[day % DAY_BUCKETS]
    if bucket["day"] != day:
        if bucket["day"] > day:
            return
        bucket["day"], bucket["n"], bucket["sum"] = day, 0, 0
    bucket["n"] += 1
    bucket["sum"] += amount


def card_of_history(history: np.ndarray) -> np.ndarray:
    """The card a feature set fs1 history (its records in arrival order) migrates to."""
    card = empty_card()
    append(card, np.asarray(history, dtype=HISTORY_DTYPE))
    return card
