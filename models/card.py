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

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from models.featureset import BUCKET_DTYPE, CARD_DTYPE, DAY_BUCKETS, EMPTY_HISTORY, HISTORY_DTYPE, RECORD, RING_RECORDS
from models.units import DAY_MS

CARD_BYTES = CARD_DTYPE.itemsize
EMPTY_CARD = np.zeros(1, dtype=CARD_DTYPE)
# Opaque views: concatenating structured arrays through them skips numpy's field promotion.
VCARD, VBUCKET = (np.dtype(f"V{d.itemsize}") for d in (CARD_DTYPE, BUCKET_DTYPE))


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


def stack(cards: Sequence[np.ndarray | None]) -> np.ndarray:
    """(U,) CARD_DTYPE of the given (1,) cards (None: never seen), a new array."""
    return np.concatenate([(EMPTY_CARD if c is None else c).view(VCARD) for c in cards]).view(CARD_DTYPE)


class CardTable(Mapping[str, np.ndarray]):
    """Cards read together (the online store's batch read): one array over their joined bytes,
    a customer id's card a (1,) read-only view of it; `rows` gathers cards in one indexing."""

    def __init__(self, ids: Sequence[str], blobs: Sequence[bytes]) -> None:
        self._row = {c: j for j, c in enumerate(ids)}
        # The cards, then an empty one: what `rows` gives a customer not read.
        self._table = np.frombuffer(b"".join(blobs) + EMPTY_CARD.tobytes(), dtype=CARD_DTYPE)

    def __getitem__(self, customer_id: str) -> np.ndarray:
        j = self._row[customer_id]
        return self._table[j : j + 1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """(U,) CARD_DTYPE of the given customers' cards (never read: empty), a new array."""
        empty = len(self._row)
        at = np.fromiter((self._row.get(c, empty) for c in ids), np.intp, len(ids))
        return self._table.view(VCARD)[at].view(CARD_DTYPE)


def gather(cards: Mapping[str, np.ndarray], ids: Sequence[str]) -> np.ndarray:
    """(U,) CARD_DTYPE of the cards of `ids` in `cards` (missing: never seen), a new array."""
    if isinstance(cards, CardTable):
        return cards.rows(ids)
    return stack([cards.get(c) for c in ids])


def ring_records(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a (U,) CARD_DTYPE array: how many records each ring holds, and those records, card
    after card, each card's oldest first (what `ring_before` gives one card at a time)."""
    count = batch["seq"].astype(np.int64)
    held = np.minimum(count, RING_RECORDS)
    j = np.arange(RING_RECORDS)
    slots = ((count - held)[:, None] + j[None, :]) % RING_RECORDS
    live = j[None, :] < held[:, None]
    ring = batch["ring"].view(RECORD)  # opaque records: fancy indexing structured arrays is slow
    stored: np.ndarray = ring[np.arange(len(batch))[:, None], slots][live].view(HISTORY_DTYPE)
    return held, stored


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


def updated(cards: Mapping[str, np.ndarray], appended: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The cards of `appended`'s customers before and after their new records (`append`'s rules,
    compiled: `models.kernels.append_many`), as two (U,) CARD_DTYPE arrays in `appended`'s order
    (a card never seen: empty); `cards` (the state read) is untouched."""
    from models.kernels import append_many

    ids = list(appended)
    if not ids:
        return EMPTY_CARD[:0], EMPTY_CARD[:0]
    before = gather(cards, ids)
    after = before.copy()
    owner = np.repeat(np.arange(len(ids)), [len(appended[c]) for c in ids])
    # (joined as bytes: numpy concatenates structured arrays at ~10 µs an array)
    append_many(after, owner, np.frombuffer(b"".join(appended[c].tobytes() for c in ids), dtype=HISTORY_DTYPE))
    return before, after


def changed_buckets(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, bytes]:
    """The day buckets `after` holds differently from `before` (two aligned (U,) card arrays):
    (per card, how many (U,) int32 LE), and those buckets card by card, each as its index
    (1 byte) and its 16 bytes — what the write script stores in place."""
    old, new = before["days"].view(VBUCKET), after["days"].view(VBUCKET)
    rows, cols = np.nonzero(old != new)  # row-major: grouped by card, in card order
    entries = np.empty(len(rows), dtype=[("bucket", "u1"), ("value", VBUCKET)])
    entries["bucket"], entries["value"] = cols, new[rows, cols]
    return np.bincount(rows, minlength=len(after)).astype("<i4"), entries.tobytes()


def card_of_history(history: np.ndarray) -> np.ndarray:
    """The card a feature set fs1 history (its records in arrival order) migrates to."""
    card = empty_card()
    append(card, np.asarray(history, dtype=HISTORY_DTYPE))
    return card
