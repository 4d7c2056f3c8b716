"""One feature definition, two backends.

Features are pure functions of (previous entity state, event) -> (feature vector,
new state). `FeatureEngine.transform` runs them over a batch of events against
plain in-memory state; the offline store (`OfflineFeatures`) keeps that state in
dicts, the online store (`stream/featurestore.py`) loads it from Redis for each
micro-batch and writes the new state back. Same code, same vectors.

State:
- customer: the card's records (`HISTORY_DTYPE`) in arrival order; an event sees the
  last `MAX_HISTORY` records before it, of which those younger than `HISTORY_DAYS`
  count. A transaction id already among them is a re-delivery: its features come from
  the records before it and nothing is appended, so updates are idempotent per
  transaction id.
- terminal: per UTC day, the number of transactions and of reported frauds, in a
  ring of `RING_DAYS` slots. Terminal features only look at days older than
  `delay_days` (labels arrive late; fresher risk would be leakage) and only at labels
  already received.

A batch is computed column-wise over numpy arrays: each event gets a (MAX_HISTORY,)
window of its customer's previous records, stored ones then earlier events of the
same batch, so the result does not depend on how events are cut into batches.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURE_SET_VERSION = "fs1"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MAX_HISTORY = 128
HISTORY_DAYS = 45
CHANNELS = ("POS", "ECOM", "ATM", "MOTO", "CONTACTLESS")
CUSTOMER_WINDOWS = (("1h", HOUR_MS), ("1d", DAY_MS), ("7d", 7 * DAY_MS), ("30d", 30 * DAY_MS))
TERMINAL_WINDOWS = (1, 7, 30)  # days

# `src` identifies the delivery (topic/partition/offset) an event came from, 0 offline:
# the same transaction id from the same record is a re-delivery, from another record a repeat.
HISTORY_DTYPE = np.dtype(
    [("tx", "<u8"), ("ts", "<i8"), ("amount", "<i8"), ("lat", "<f8"), ("lon", "<f8"), ("dev", "<u8"), ("src", "<u8")]
)
SOURCE_KEY = "_source"  # optional event key: an int naming the record it was read from

FEATURE_NAMES: tuple[str, ...] = (
    "amount",
    "log_amount",
    "hour",
    "is_night",
    "is_weekend",
    *(f"cust_{kind}_{w}" for w, _ in CUSTOMER_WINDOWS for kind in ("n", "mean")),
    "amount_over_mean_30d",
    "secs_since_prev",
    "device_missing",
    "device_new",
    "cust_devices_1d",
    "dist_prev_km",
    "speed_kmh",
    *(f"term_{kind}_{d}d" for d in TERMINAL_WINDOWS for kind in ("n", "risk")),
    *(f"channel_{c.lower()}" for c in CHANNELS),
    "mcc",
)
N_FEATURES = len(FEATURE_NAMES)
_IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}
_SPANS = np.array([span for _, span in CUSTOMER_WINDOWS], dtype=np.int64)
_CUST_N = np.array([_IDX[f"cust_n_{w}"] for w, _ in CUSTOMER_WINDOWS])
_CUST_MEAN = np.array([_IDX[f"cust_mean_{w}"] for w, _ in CUSTOMER_WINDOWS])
_CHANNEL = {c: i for i, c in enumerate(CHANNELS)}
_CHANNEL_IDX = np.array([_IDX[f"channel_{c.lower()}"] for c in CHANNELS])
_TERM_IDX = np.array([_IDX[f"term_{kind}_{d}d"] for d in TERMINAL_WINDOWS for kind in ("n", "risk")])

# Terminal state: a ring of RING_DAYS (day, transactions, frauds) int32 slots, slot = day % RING_DAYS.
RING_DAYS = 64
RING_DTYPE = np.dtype("<i4")
TX, FRAUD = 1, 2  # ring columns


def stable_hashes(texts: Iterable[str]) -> np.ndarray:
    """A 64-bit hash of each text that is the same in every process (unlike `hash`), as uint64:
    the 8-byte BLAKE2b digest of its UTF-8, little-endian. Stored in customer histories, so
    it must never change."""
    digests = b"".join([hashlib.blake2b(t.encode(), digest_size=8).digest() for t in texts])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


_EMPTY = np.zeros(0, dtype=HISTORY_DTYPE)  # a customer never seen
_RECORD = np.dtype(f"V{HISTORY_DTYPE.itemsize}")


def concat_records(parts: Sequence[np.ndarray]) -> np.ndarray:
    """np.concatenate for history arrays, as opaque records (several times faster for short ones)."""
    if not parts:
        return _EMPTY
    return np.concatenate([p.view(_RECORD) for p in parts]).view(HISTORY_DTYPE)


def empty_ring() -> np.ndarray:
    """A terminal's state: RING_DAYS slots of (day, transactions, frauds), slot = day % RING_DAYS."""
    return np.zeros((RING_DAYS, 3), dtype=RING_DTYPE)


def ring_add(ring: np.ndarray, day: int, column: int, count: int) -> None:
    """Add `count` to `column` (TX or FRAUD) of `day`; a slot holding an older day is reset
    first, a slot already holding a later day means `day` is too old to be read again."""
    slot = ring[day % RING_DAYS]
    if slot[0] != day:
        if slot[0] > day:
            return
        slot[:] = (day, 0, 0)
    slot[column] += count


def ring_counts(ring: np.ndarray) -> dict[int, tuple[int, int]]:
    """{day: (transactions, frauds)} of the occupied slots (for tests and tools)."""
    return {int(d): (int(n), int(f)) for d, n, f in ring if d}


def ring_from_bytes(blob: bytes | None) -> np.ndarray:
    """A ring from its Redis string; the string may stop after its last written slot."""
    ring = empty_ring()
    if blob:
        flat = np.frombuffer(blob, dtype=RING_DTYPE)
        ring.reshape(-1)[: flat.size] = flat[: ring.size]
    return ring


@dataclass(frozen=True, slots=True)
class BatchFeatures:
    """The outcome of a batch: vectors, appended history records, terminal increments."""

    features: np.ndarray  # (n, F) float32
    appended: dict[str, np.ndarray]  # customer id -> records to append to its history, in order
    terminal_counts: dict[tuple[str, int], int]  # (terminal id, day) -> transactions to add
    repeats: np.ndarray  # (n,) bool: transaction id already seen from another record


def _finite_or_nan(values: list[Any]) -> np.ndarray:
    """Optional floats as float64: None and non-finite values become NaN."""
    out = np.array(values, dtype=np.float64)
    out[~np.isfinite(out)] = math.nan
    return out


@dataclass(frozen=True, slots=True)
class _Events:
    """Column arrays of a batch of events."""

    ts: np.ndarray  # int64 ms
    amount: np.ndarray  # int64 minor units
    lat: np.ndarray
    lon: np.ndarray
    dev: np.ndarray  # uint64, 0 = no device
    tx: np.ndarray  # uint64 hash of the transaction id
    src: np.ndarray  # uint64 delivery id, 0 offline

    @staticmethod
    def of(events: Sequence[Mapping[str, Any]]) -> _Events:
        n = len(events)
        devices = [e.get("device_id") or "" for e in events]
        dev = stable_hashes(devices)
        dev[[not d for d in devices]] = 0
        return _Events(
            ts=np.fromiter((e["event_time"] for e in events), np.int64, n),
            amount=np.fromiter((e["amount"] for e in events), np.int64, n),
            lat=_finite_or_nan([e.get("latitude") for e in events]),
            lon=_finite_or_nan([e.get("longitude") for e in events]),
            dev=dev,
            tx=stable_hashes([e["transaction_id"] for e in events]),
            src=np.fromiter((e.get(SOURCE_KEY) or 0 for e in events), np.uint64, n),
        )

    def records(self, rows: np.ndarray | slice) -> np.ndarray:
        """History records of the given events."""
        rec = np.empty(len(self.ts[rows]), dtype=HISTORY_DTYPE)
        for name, col in (("tx", self.tx), ("ts", self.ts), ("amount", self.amount), ("lat", self.lat),
                          ("lon", self.lon), ("dev", self.dev), ("src", self.src)):  # fmt: skip
            rec[name] = col[rows]
        return rec


def _customer_block(out: np.ndarray, ev: _Events, window: np.ndarray, valid: np.ndarray) -> None:
    """Customer features of n events from their previous records.

    `window` (n, W) HISTORY_DTYPE holds, per event, the customer's last W records before
    it, oldest first; `valid` (n, W) marks the real ones (left padding is not).
    """
    ts = ev.ts[:, None]
    t_prev = window["ts"]
    age = valid & (t_prev > ts - HISTORY_DAYS * DAY_MS)
    amounts = window["amount"] / 100.0
    for j, span in enumerate(_SPANS.tolist()):
        inside = age & (t_prev > ts - span)
        counts = inside.sum(axis=1)
        sums = np.where(inside, amounts, 0.0).sum(axis=1)
        out[:, _CUST_N[j]] = counts
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, _CUST_MEAN[j]] = np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)
    amount = ev.amount / 100.0
    mean_30 = out[:, _IDX["cust_mean_30d"]]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, _IDX["amount_over_mean_30d"]] = np.where(mean_30 > 0, amount / np.where(mean_30 > 0, mean_30, 1.0), math.nan)
    rows = np.arange(len(ts))
    width = window.shape[1]
    has_prev = age.any(axis=1)
    last = width - 1 - np.argmax(age[:, ::-1], axis=1)
    out[:, _IDX["secs_since_prev"]] = np.where(has_prev, (ev.ts - t_prev[rows, last]) / 1000.0, math.nan)
    dev = ev.dev[:, None]
    d_prev = window["dev"]
    has_dev = ev.dev != 0
    out[:, _IDX["device_missing"]] = (~has_dev).astype(np.float64)
    out[:, _IDX["device_new"]] = (has_dev & has_prev & ~(age & (d_prev == dev)).any(axis=1)).astype(np.float64)
    day = age & (t_prev > ts - DAY_MS) & (d_prev != 0)
    ranked = np.sort(np.where(day, d_prev, 0), axis=1)
    distinct = (ranked[:, 0] != 0).astype(np.int64) + ((ranked[:, 1:] != ranked[:, :-1]) & (ranked[:, 1:] != 0)).sum(axis=1)
    out[:, _IDX["cust_devices_1d"]] = distinct + (has_dev & ~(day & (d_prev == dev)).any(axis=1))
    located = age & ~np.isnan(window["lat"])
    last_loc = width - 1 - np.argmax(located[:, ::-1], axis=1)
    ok = located.any(axis=1) & ~np.isnan(ev.lat)
    lat1, lon1, t1 = window["lat"][rows, last_loc], window["lon"][rows, last_loc], t_prev[rows, last_loc]
    dist = np.where(ok, _haversine_km(lat1, lon1, ev.lat, ev.lon), math.nan)
    hours = np.maximum((ev.ts - t1) / HOUR_MS, 1 / 60)  # at least a minute apart
    out[:, _IDX["dist_prev_km"]] = dist
    out[:, _IDX["speed_kmh"]] = np.where(ok, dist / hours, math.nan)


def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        p1, p2 = np.radians(lat1), np.radians(lat2)
        dp, dl = p2 - p1, np.radians(lon2 - lon1)
        a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
        result: np.ndarray = 2 * 6371.0 * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return result


def _padded(prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One event's previous records as a (1, W) window and its valid mask."""
    window = np.zeros((1, MAX_HISTORY), dtype=HISTORY_DTYPE)
    valid = np.zeros((1, MAX_HISTORY), dtype=bool)
    k = min(len(prev), MAX_HISTORY)
    if k:
        window[0, MAX_HISTORY - k :] = prev[-k:]
        valid[0, MAX_HISTORY - k :] = True
    return window, valid


_EMPTY_RING = empty_ring()


class FeatureEngine:
    """Computes feature vectors; holds only configuration, never state."""

    def __init__(self, delay_days: int = 7) -> None:
        if delay_days < 1:
            raise ValueError("delay_days must be at least 1: same-day terminal counts are not stable")
        if delay_days + max(TERMINAL_WINDOWS) >= RING_DAYS:
            raise ValueError(
                f"delay_days must be below {RING_DAYS - max(TERMINAL_WINDOWS)}: terminal state keeps {RING_DAYS} days"
            )
        self.delay_days = delay_days

    def event_only(self, events: Sequence[Mapping[str, Any]], ev: _Events, out: np.ndarray) -> None:
        """Features of each event alone."""
        amount = ev.amount / 100.0
        hour = (ev.ts % DAY_MS) / HOUR_MS
        weekday = (ev.ts // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        out[:, _IDX["amount"]] = amount
        out[:, _IDX["log_amount"]] = np.log1p(amount)
        out[:, _IDX["hour"]] = hour
        out[:, _IDX["is_night"]] = (hour < 6.0) | (hour >= 22.0)
        out[:, _IDX["is_weekend"]] = weekday >= 5
        channel = np.fromiter((_CHANNEL.get(e.get("channel") or "", -1) for e in events), np.int64, len(events))
        out[:, _CHANNEL_IDX] = channel[:, None] == np.arange(len(CHANNELS))
        out[:, _IDX["mcc"]] = np.fromiter((e.get("mcc") or 0 for e in events), np.float64, len(events))

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
    ) -> BatchFeatures:
        """Features of `events` in order, given the state before the batch.

        `customers` / `terminals` hold the state of every entity the batch touches
        (missing = never seen); a history may be longer than MAX_HISTORY, only its
        last MAX_HISTORY records count. The inputs are not modified.
        """
        n = len(events)
        feats = np.full((n, N_FEATURES), np.nan, dtype=np.float64)
        ev = _Events.of(events)
        self.event_only(events, ev, feats)
        cids = [e["customer_id"] for e in events]
        first = dict.fromkeys(cids)
        index = {c: u for u, c in enumerate(first)}
        histories = [customers.get(c, _EMPTY)[-MAX_HISTORY:] for c in first]
        cust = np.fromiter((index[c] for c in cids), np.int64, n)
        appended = self._vectorised(ev, cust, histories, feats)
        repeats = np.zeros(n, dtype=bool)
        if appended is None:  # a re-delivery or a repeated id in the batch: event by event, the rare path
            appended, repeats = self._one_by_one(ev, cust, histories, feats)
        days = ev.ts // DAY_MS
        tids = [e["terminal_id"] for e in events]
        # Terminal features depend only on (terminal, day) and the state before the batch.
        keys = list(zip(tids, days.tolist(), strict=True))
        pair_index: dict[tuple[str, int], int] = {}
        pair_of = [pair_index.setdefault(k, len(pair_index)) for k in keys]
        rings = np.stack([terminals.get(t, _EMPTY_RING) for t, _ in pair_index]) if pair_index else _EMPTY_RING[None]
        term = self.terminal(rings, np.fromiter((d for _, d in pair_index), np.int64, len(pair_index)))
        feats[:, _TERM_IDX] = term[pair_of]
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
        return BatchFeatures(feats.astype(np.float32), records, counts, repeats)

    def _vectorised(
        self, ev: _Events, cust: np.ndarray, histories: list[np.ndarray], out: np.ndarray
    ) -> dict[int, list[int]] | None:
        """Customer features when every event is new (appends one record); None when one is not."""
        n, width = len(cust), MAX_HISTORY
        h_len = np.fromiter((len(h) for h in histories), np.int64, len(histories))
        per_cust = np.bincount(cust, minlength=len(histories))
        size = h_len + per_cust
        base = np.cumsum(size) - size
        # One array holding, per customer, its stored records then its events of this batch.
        combined = np.zeros(int(size.sum()), dtype=HISTORY_DTYPE)
        stored = concat_records(histories)
        h_start = np.cumsum(h_len) - h_len
        # (Structured fancy indexing is slow: scatter and gather as opaque records.)
        combined.view(_RECORD)[np.repeat(base, h_len) + np.arange(len(stored)) - np.repeat(h_start, h_len)] = stored.view(_RECORD)
        order = np.argsort(cust, kind="stable")
        c_start = np.cumsum(per_cust) - per_cust
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - np.repeat(c_start, per_cust)
        own = base[cust] + h_len[cust] + rank
        combined.view(_RECORD)[own] = ev.records(slice(None)).view(_RECORD)
        idx = own[:, None] - width + np.arange(width)[None, :]
        valid = idx >= base[cust][:, None]
        window = np.take(combined, np.maximum(idx, 0))
        if (valid & (window["tx"] == ev.tx[:, None])).any():
            return None
        _customer_block(out, ev, window, valid)
        appended: dict[int, list[int]] = {}
        for i in order.tolist():
            appended.setdefault(int(cust[i]), []).append(i)
        return appended

    def _one_by_one(
        self, ev: _Events, cust: np.ndarray, histories: list[np.ndarray], out: np.ndarray
    ) -> tuple[dict[int, list[int]], np.ndarray]:
        """Customer features event by event: a transaction id already in the history is a
        re-delivery (same source) or a repeat (another source); either way its features
        come from the records before it and nothing is appended."""
        n = len(cust)
        current = list(histories)
        appended: dict[int, list[int]] = {}
        repeats = np.zeros(n, dtype=bool)
        for i in range(n):
            u = int(cust[i])
            hist = current[u]
            seen = np.flatnonzero(hist["tx"] == ev.tx[i])
            if seen.size:
                origin = int(hist["src"][seen[0]])
                repeats[i] = ev.src[i] != 0 and origin not in (0, int(ev.src[i]))
                prev = hist[: seen[0]]
            else:
                prev = hist
            window, valid = _padded(prev)
            one = _Events(*(getattr(ev, f)[i : i + 1] for f in ("ts", "amount", "lat", "lon", "dev", "tx", "src")))
            _customer_block(out[i : i + 1], one, window, valid)
            if not seen.size:
                current[u] = concat_records([hist, ev.records(slice(i, i + 1))])[-MAX_HISTORY:]
                appended.setdefault(u, []).append(i)
        return appended, repeats


class OfflineFeatures:
    """In-memory state for training, evaluation and backtests."""

    def __init__(self, engine: FeatureEngine) -> None:
        self.engine = engine
        self.customers: dict[str, np.ndarray] = {}
        self.terminals: dict[str, np.ndarray] = {}
        self._labelled: set[str] = set()

    def apply_label(self, transaction_id: str, terminal_id: str, event_time: int, is_fraud: bool) -> None:
        """A fraud report, counted once per transaction id."""
        if not is_fraud or transaction_id in self._labelled:
            return
        self._labelled.add(transaction_id)
        ring_add(self.terminals.setdefault(terminal_id, empty_ring()), event_time // DAY_MS, FRAUD, 1)

    def process(self, events: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Features of a batch, then the state updated as the online store would."""
        result = self.engine.transform(events, self.customers, self.terminals)
        for cid, records in result.appended.items():
            old = self.customers.get(cid)
            self.customers[cid] = (records if old is None else concat_records([old, records]))[-MAX_HISTORY:]
        for (tid, day), count in result.terminal_counts.items():
            ring_add(self.terminals.setdefault(tid, empty_ring()), day, TX, count)
        return result.features

    def run(self, events: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]] = (), batch: int = 512) -> np.ndarray:
        """Features of a time-ordered stream, labels applied once their label_time has passed."""
        out = np.empty((len(events), N_FEATURES), dtype=np.float32)
        li = 0
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            t0 = int(chunk[0]["event_time"])
            while li < len(labels) and int(labels[li]["label_time"]) <= t0:
                lab = labels[li]
                self.apply_label(lab["transaction_id"], lab["terminal_id"], int(lab["event_time"]), bool(lab["is_fraud"]))
                li += 1
            out[start : start + len(chunk)] = self.process(chunk)
        return out
