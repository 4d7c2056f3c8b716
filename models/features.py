"""One feature definition, two backends.

Features are pure functions of (previous entity state, event) -> (feature vector, new
state). `FeatureEngine.transform` runs them over a batch against plain in-memory state;
the offline store (`OfflineFeatures`) keeps that state in dicts, the online store
(`stream/state/featurestore.py`) loads it from Redis per micro-batch and writes it back.
Same code, same vectors. State layouts: `models.featureset`, `models.card`.

A transaction id already in its card's ring is a re-delivery: its features come from the
records before it and nothing is appended, so updates are idempotent per transaction id.
Terminal features only look at days older than `delay_days` (labels arrive late; fresher
risk would be leakage) and only at labels already received.

Column-wise over a batch: each event gets a window of its card's previous records, the
ring's then earlier events of the batch, and the card's day buckets from before the batch.
That equals applying the events one by one (`_one_by_one`, the reference, also taken for a
re-delivery or a card's events out of time order) — the result does not depend on batching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.card import append, find, gather, ring_before, ring_records
from models.cardreads import reads
from models.featureset import (
    CHANNEL,
    CHANNEL_IDX,
    CHANNELS,
    DEFAULT_DELAY_DAYS,
    HISTORY_DTYPE,
    IDX,
    N_FEATURES,
    RECENT,
    RECORD,
    RING_DAYS,
    RING_RECORDS,
    TERM_IDX,
    TERMINAL_WINDOWS,
    empty_ring,
)
from models.history import Events, customer_reads, customer_values, padded
from models.sequence import N_SEQ, SEQ_LEN, sequence_steps, sequence_values
from models.units import DAY_MS, HOUR_MS


@dataclass(frozen=True, slots=True)
class BatchFeatures:
    """The outcome of a batch: vectors, the records appended to the cards, terminal increments."""

    features: np.ndarray  # (n, F) float32
    appended: dict[str, np.ndarray]  # customer id -> records to append to its history, in order
    terminal_counts: dict[tuple[str, int], int]  # (terminal id, day) -> transactions to add
    repeats: np.ndarray  # (n,) bool: transaction id already seen from another record
    sequences: np.ndarray  # (n, SEQ_LEN, N_SEQ) float32: the card's recent sequence (models.sequence)


EMPTY_RING = empty_ring()


def card_block(out: np.ndarray, seqs: np.ndarray, ev: Events, window: np.ndarray, valid: np.ndarray, buckets: np.ndarray) -> None:
    """Customer features (into `out`) and sequences (into `seqs`) of n events (numpy: the reference).

    `window` (n, W) HISTORY_DTYPE holds, per event, its card's previous records still in the
    ring or earlier in the batch, oldest first; `valid` (n, W) marks the real ones (left
    padding is not); `buckets` (n, DAY_BUCKETS) the card's day buckets.
    """
    customer_values(out, ev, customer_reads(ev, window, valid, buckets))
    sequence_values(seqs, ev, sequence_steps(ev, window[:, -RECENT:], valid[:, -RECENT:]))


class FeatureEngine:
    """Computes feature vectors; holds only configuration, never state."""

    def __init__(self, delay_days: int = DEFAULT_DELAY_DAYS, compiled: bool = True) -> None:
        if delay_days < 1:
            raise ValueError("delay_days must be at least 1: same-day terminal counts are not stable")
        if delay_days + max(TERMINAL_WINDOWS) >= RING_DAYS:
            raise ValueError(
                f"delay_days must be below {RING_DAYS - max(TERMINAL_WINDOWS)}: terminal state keeps {RING_DAYS} days"
            )
        self.delay_days, self.compiled = delay_days, compiled

    def event_only(self, events: Sequence[Mapping[str, Any]], ev: Events, out: np.ndarray) -> None:
        """Features of each event alone."""
        amount = ev.amount / 100.0
        hour = (ev.ts % DAY_MS) / HOUR_MS
        weekday = (ev.ts // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        out[:, IDX["amount"]] = amount
        out[:, IDX["log_amount"]] = np.log1p(amount)
        out[:, IDX["hour"]] = hour
        out[:, IDX["is_night"]] = (hour < 6.0) | (hour >= 22.0)
        out[:, IDX["is_weekend"]] = weekday >= 5
        channel = np.fromiter((CHANNEL.get(e.get("channel") or "", -1) for e in events), np.int64, len(events))
        out[:, CHANNEL_IDX] = channel[:, None] == np.arange(len(CHANNELS))
        out[:, IDX["mcc"]] = np.fromiter((e.get("mcc") or 0 for e in events), np.float64, len(events))

    def terminal(self, rings: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Terminal features (P, 2 * windows) of (ring, day) pairs, from days older than the label delay."""
        end = (days - self.delay_days)[:, None]  # exclusive
        slot_day, n_tx, n_fraud = rings[:, :, 0], rings[:, :, 1], rings[:, :, 2]
        out = np.empty((len(days), 2 * len(TERMINAL_WINDOWS)))
        for j, w in enumerate(TERMINAL_WINDOWS):
            inside = (slot_day >= end - w) & (slot_day < end)
            n = np.where(inside, n_tx, 0).sum(axis=1)
            f = np.where(inside, n_fraud, 0).sum(axis=1)
            out[:, 2 * j] = n
            out[:, 2 * j + 1] = np.where(n > 0, f / np.maximum(n, 1), 0.0)
        return out

    def transform(
        self,
        events: Sequence[Mapping[str, Any]],
        customers: Mapping[str, np.ndarray],
        terminals: Mapping[str, np.ndarray],
        sources: Sequence[int] | None = None,
    ) -> BatchFeatures:
        """Features of `events` in order, given the state before the batch.

        `customers` / `terminals`: the state of every entity the batch touches (missing = never
        seen; cards as in `models.card`). `sources`: per event, the delivery it was read from
        (nonzero; none offline). The inputs are not modified.
        """
        n = len(events)
        feats = np.full((n, N_FEATURES), np.nan, dtype=np.float64)
        seqs = np.zeros((n, SEQ_LEN, N_SEQ), dtype=np.float64)
        ev = Events.of(events, sources)
        self.event_only(events, ev, feats)
        cids = [e["customer_id"] for e in events]
        first = dict.fromkeys(cids)
        index = {c: u for u, c in enumerate(first)}
        batch = gather(customers, list(first))
        cust = np.fromiter((index[c] for c in cids), np.int64, n)
        appended = self._vectorised(ev, cust, batch, feats, seqs)
        repeats = np.zeros(n, dtype=bool)
        if appended is None:  # a re-delivery, a repeated id or a late event: event by event, the rare path
            appended, repeats = self._one_by_one(ev, cust, batch, feats, seqs)
        days = ev.ts // DAY_MS
        tids = [e["terminal_id"] for e in events]
        # Terminal features depend only on (terminal, day) and the state before the batch.
        keys = list(zip(tids, days.tolist(), strict=True))
        pair_index: dict[tuple[str, int], int] = {}
        pair_of = [pair_index.setdefault(k, len(pair_index)) for k in keys]
        rings = np.stack([terminals.get(t, EMPTY_RING) for t, _ in pair_index]) if pair_index else EMPTY_RING[None]
        term = self.terminal(rings, np.fromiter((d for _, d in pair_index), np.int64, len(pair_index)))
        feats[:, TERM_IDX] = term[pair_of]
        counts: dict[tuple[str, int], int] = {}
        for i in sorted(i for rows in appended.values() for i in rows):
            counts[keys[i]] = counts.get(keys[i], 0) + 1
        # Each customer's appended records, in order: one gather, then consecutive slices of it.
        rows = [i for u in appended for i in appended[u]]
        gathered = ev.records(np.array(rows, dtype=np.int64))
        parts: dict[int, np.ndarray] = {}
        start = 0
        for u, rows_of in appended.items():
            parts[u] = gathered[start : start + len(rows_of)]
            start += len(rows_of)
        records = {c: parts[u] for c, u in index.items() if u in appended}
        return BatchFeatures(feats.astype(np.float32), records, counts, repeats, seqs.astype(np.float32))

    def _vectorised(
        self, ev: Events, cust: np.ndarray, batch: np.ndarray, out: np.ndarray, seqs: np.ndarray
    ) -> dict[int, list[int]] | None:
        """Customer features when every event is new and not older than its card's earlier
        records (appends one record each); None when one is not. `batch`: the (U,) cards
        before the batch, event i's at `cust[i]`. Compiled (`models.cardreads`) unless the
        engine was made with `compiled=False`: the numpy reference."""
        if self.compiled:
            got = reads(ev, cust, batch)
            if got is None:
                return None
            customer_values(out, ev, got[0])
            sequence_values(seqs, ev, got[1])
        elif not self._numpy_reads(ev, cust, batch, out, seqs):
            return None
        appended: dict[int, list[int]] = {}
        for i in np.argsort(cust, kind="stable").tolist():
            appended.setdefault(int(cust[i]), []).append(i)
        return appended

    @staticmethod
    def _numpy_reads(ev: Events, cust: np.ndarray, batch: np.ndarray, out: np.ndarray, seqs: np.ndarray) -> bool:
        """`_vectorised`'s reference: each event's window of previous records built as an (n, W)
        structured array, then `card_block`; False where the compiled path returns None."""
        h_len, stored = ring_records(batch)
        per_cust = np.bincount(cust, minlength=len(h_len))
        n, width = len(cust), RING_RECORDS + int(per_cust.max(initial=0))
        size = h_len + per_cust
        base = np.cumsum(size) - size
        # One array holding, per customer, its stored records then its events of this batch.
        combined = np.zeros(int(size.sum()), dtype=HISTORY_DTYPE)
        h_start = np.cumsum(h_len) - h_len
        # (Structured fancy indexing is slow: scatter and gather as opaque records.)
        combined.view(RECORD)[np.repeat(base, h_len) + np.arange(len(stored)) - np.repeat(h_start, h_len)] = stored.view(RECORD)
        order = np.argsort(cust, kind="stable")
        c_start = np.cumsum(per_cust) - per_cust
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - np.repeat(c_start, per_cust)
        own = base[cust] + h_len[cust] + rank
        combined.view(RECORD)[own] = ev.records(slice(None)).view(RECORD)
        idx = own[:, None] - width + np.arange(width)[None, :]
        valid = idx >= base[cust][:, None]
        window = np.take(combined, np.maximum(idx, 0))
        if (valid & ((window["tx"] == ev.tx[:, None]) | (window["ts"] > ev.ts[:, None]))).any():
            return False
        mine = batch["days"][cust]
        if ((mine["n"] > 0) & (mine["day"] > (ev.ts // DAY_MS)[:, None])).any():
            return False
        card_block(out, seqs, ev, window, valid, mine)
        return True

    def _one_by_one(
        self, ev: Events, cust: np.ndarray, batch: np.ndarray, out: np.ndarray, seqs: np.ndarray
    ) -> tuple[dict[int, list[int]], np.ndarray]:
        """Customer features event by event, each from the card as the events before it left
        it: a transaction id already in the ring is a re-delivery (same source) or a repeat
        (another source); either way its features come from the records before it and
        nothing is appended."""
        n = len(cust)
        current = [batch[u : u + 1].copy() for u in range(len(batch))]  # (a card never seen: empty)
        appended: dict[int, list[int]] = {}
        repeats = np.zeros(n, dtype=bool)
        for i in range(n):
            u = int(cust[i])
            card = current[u]
            seen = find(card, int(ev.tx[i]))
            if seen is not None:
                origin = int(card["ring"][0][seen % RING_RECORDS]["src"])
                repeats[i] = ev.src[i] != 0 and origin not in (0, int(ev.src[i]))
            window, valid = padded(ring_before(card, seen), RING_RECORDS)
            one = Events(*(getattr(ev, f)[i : i + 1] for f in ("ts", "amount", "lat", "lon", "dev", "tx", "src")))
            card_block(out[i : i + 1], seqs[i : i + 1], one, window, valid, card["days"])
            if seen is None:
                append(card, ev.records(slice(i, i + 1)))
                appended.setdefault(u, []).append(i)
        return appended, repeats
