"""What one micro-batch writes to the feature store, as WRITE_BATCH's arguments: a few
little-endian arrays built by numpy for the whole batch (the script walks them), rather
than three arguments per card built in Python."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.card import changed_buckets, updated
from models.featureset import BUCKET_DTYPE, HISTORY_DTYPE

CHANGED = BUCKET_DTYPE.itemsize + 1  # a changed bucket as sent: its index, its bytes
RECORD_BYTES = HISTORY_DTYPE.itemsize


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """WRITE_BATCH's arguments after #customers and the ttl (`stream.state.scripts`), kept as
    arrays so that a cluster's per-key calls take their slices."""

    read: np.ndarray  # (C,) <i8: each card's record count as read; -1: the script applies the records
    counts: np.ndarray  # (C,) <i4: new records per card
    records: bytes  # the new records, HISTORY_DTYPE, card after card
    changed: np.ndarray  # (C,) <i4: changed day buckets per card
    buckets: bytes  # CHANGED bytes a changed bucket (models.card.changed_buckets)
    days: np.ndarray  # (T,) <i4: (day, count) pairs per terminal
    pairs: np.ndarray  # (sum days, 2) <i4

    def args(self, ttl_ms: int) -> list[Any]:
        fields = (self.read, self.counts, self.records, self.changed, self.buckets, self.days, self.pairs)
        return [len(self.read), ttl_ms, *(f if isinstance(f, bytes) else f.tobytes() for f in fields)]

    def per_key(self) -> list[StateUpdate]:
        """The arguments of each key alone, cards then terminals (a cluster's one call per key)."""
        rec = (np.concatenate([[0], np.cumsum(self.counts)]) * RECORD_BYTES).tolist()
        chg = (np.concatenate([[0], np.cumsum(self.changed)]) * CHANGED).tolist()
        pair = np.concatenate([[0], np.cumsum(self.days)]).tolist()
        none = np.zeros(0, "<i4")
        cards = [StateUpdate(self.read[j : j + 1], self.counts[j : j + 1], self.records[rec[j] : rec[j + 1]],
                             self.changed[j : j + 1], self.buckets[chg[j] : chg[j + 1]], none, self.pairs[:0])
                 for j in range(len(self.read))]  # fmt: skip
        terminals = [StateUpdate(self.read[:0], none, b"", none, b"", self.days[t : t + 1], self.pairs[pair[t] : pair[t + 1]])
                     for t in range(len(self.days))]  # fmt: skip
        return cards + terminals


def state_update(cards: Mapping[str, np.ndarray], appended: Mapping[str, np.ndarray], terminals: list[list[int]]) -> StateUpdate:
    """What the batch's write sends: the records appended to each card of `appended` (read as
    `cards`), with the count read — -1 when another writer's records met them in the ring, so the
    script applies them itself — and the buckets they change; then (day, count) per terminal."""
    before, after = updated(cards, appended)
    counts = np.fromiter((len(r) for r in appended.values()), dtype="<i4", count=len(appended))
    read = np.where(after["seq"] == before["seq"] + counts, before["seq"].astype("<i8"), -1).astype("<i8")
    records = b"".join(r.tobytes() for r in appended.values())
    changed, buckets = changed_buckets(before, after)
    days = np.array([len(p) // 2 for p in terminals], dtype="<i4")
    pairs = np.array([x for p in terminals for x in p], dtype="<i4").reshape(-1, 2)
    return StateUpdate(read, counts, records, changed, buckets, days, pairs)
