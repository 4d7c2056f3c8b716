"""One feature definition, two backends.

Features are pure functions of (previous entity state, event) -> (feature vector,
new state). `FeatureEngine.transform` runs them over a batch of events against
plain in-memory state; the offline store (`OfflineFeatures`) keeps that state in
dicts, the online store (`stream/featurestore.py`) loads it from Redis for each
micro-batch and writes the new state back. Same code, same vectors.

State:
- customer: the recent events of the card (`HISTORY_DTYPE`, oldest first, at most
  `MAX_HISTORY` events and `HISTORY_DAYS` days). A transaction id already in the
  history is a re-delivery: its features come from the events before it and the
  state is left unchanged, so updates are idempotent per transaction id.
- terminal: per UTC day, the number of transactions and of reported frauds.
  Terminal features only look at days older than `delay_days` (labels arrive
  late; fresher risk would be leakage) and only at labels already received.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def empty_history() -> np.ndarray:
    return np.zeros(0, dtype=HISTORY_DTYPE)


@dataclass
class TerminalState:
    """Per-day counts of one terminal; day = event_time // DAY_MS (UTC)."""

    tx: dict[int, int] = field(default_factory=dict)
    fraud: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchFeatures:
    """The outcome of a batch: vectors, new customer states, terminal increments."""

    features: np.ndarray  # (n, F) float32
    customers: dict[str, np.ndarray]  # customer id -> new history (only changed ones)
    terminal_tx: list[tuple[str, int, str]]  # (terminal id, day, transaction id) to count once each
    repeats: np.ndarray  # (n,) bool: transaction id already seen from another record


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


def _opt_float(v: Any) -> float:
    if v is None:
        return math.nan
    f = float(v)
    return f if math.isfinite(f) else math.nan


class FeatureEngine:
    """Computes feature vectors; holds only configuration, never state."""

    def __init__(self, delay_days: int = 7) -> None:
        if delay_days < 1:
            raise ValueError("delay_days must be at least 1: same-day terminal counts are not stable")
        self.delay_days = delay_days

    def customer(self, history: np.ndarray, event: Mapping[str, Any], out: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """Fill the customer part of `out` (F,); return (new history or None if unchanged, is a repeat)."""
        tx_hash = stable_hash(event["transaction_id"])
        src = int(event.get(SOURCE_KEY) or 0)
        seen = np.flatnonzero(history["tx"] == tx_hash)
        repeat = bool(seen.size) and src != 0 and int(history["src"][seen[0]]) not in (0, src)
        prev = history[: seen[0]] if seen.size else history
        ts = int(event["event_time"])
        amount = event["amount"] / 100.0
        dev_id = event.get("device_id")
        dev = stable_hash(dev_id) if dev_id else 0
        lat, lon = _opt_float(event.get("latitude")), _opt_float(event.get("longitude"))

        p_ts = prev["ts"]
        p_amount = prev["amount"] / 100.0
        # All windows at once: (W, n) membership, then counts and sums in two calls.
        inside = p_ts[None, :] > ts - _SPANS[:, None]
        counts = inside.sum(axis=1)
        sums = inside @ p_amount
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)
        out[_CUST_N] = counts
        out[_CUST_MEAN] = means
        mean_30 = out[_IDX["cust_mean_30d"]]
        out[_IDX["amount_over_mean_30d"]] = amount / mean_30 if mean_30 > 0 else math.nan
        out[_IDX["secs_since_prev"]] = (ts - int(p_ts[-1])) / 1000.0 if prev.size else math.nan
        out[_IDX["device_missing"]] = 0.0 if dev else 1.0
        out[_IDX["device_new"]] = float(bool(dev) and prev.size > 0 and not bool((prev["dev"] == dev).any()))
        day_devs = prev["dev"][(p_ts > ts - DAY_MS) & (prev["dev"] != 0)]
        out[_IDX["cust_devices_1d"]] = len(set(day_devs.tolist()) | ({dev} if dev else set()))
        dist = speed = math.nan
        if not math.isnan(lat):
            located = np.flatnonzero(~np.isnan(prev["lat"]))
            if located.size:
                last = prev[located[-1]]
                dist = _haversine_km(float(last["lat"]), float(last["lon"]), lat, lon)
                hours = max((ts - int(last["ts"])) / HOUR_MS, 1 / 60)  # at least a minute apart
                speed = dist / hours
        out[_IDX["dist_prev_km"]] = dist
        out[_IDX["speed_kmh"]] = speed

        if seen.size:
            return None, repeat
        record = np.array([(tx_hash, ts, int(event["amount"]), lat, lon, dev, src)], dtype=HISTORY_DTYPE)
        keep = history[history["ts"] > ts - HISTORY_DAYS * DAY_MS][-(MAX_HISTORY - 1) :]
        return np.concatenate([keep, record]), False

    def terminal(self, state: TerminalState, event_time: int, out: np.ndarray) -> None:
        """Fill the terminal part of `out` from days older than the label delay."""
        day = event_time // DAY_MS
        end = day - self.delay_days  # exclusive
        for w in TERMINAL_WINDOWS:
            days = range(end - w, end)
            n = sum(state.tx.get(d, 0) for d in days)
            f = sum(state.fraud.get(d, 0) for d in days)
            out[_IDX[f"term_n_{w}d"]] = n
            out[_IDX[f"term_risk_{w}d"]] = f / n if n else 0.0

    def event_only(self, event: Mapping[str, Any], out: np.ndarray) -> None:
        """Features of the event alone."""
        ts = int(event["event_time"])
        amount = event["amount"] / 100.0
        hour = (ts % DAY_MS) / HOUR_MS
        weekday = (ts // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        out[_IDX["amount"]] = amount
        out[_IDX["log_amount"]] = math.log1p(amount)
        out[_IDX["hour"]] = hour
        out[_IDX["is_night"]] = float(hour < 6.0 or hour >= 22.0)
        out[_IDX["is_weekend"]] = float(weekday >= 5)
        channel = event.get("channel")
        for c in CHANNELS:
            out[_IDX[f"channel_{c.lower()}"]] = float(channel == c)
        out[_IDX["mcc"]] = float(event.get("mcc") or 0)

    def transform(
        self,
        events: Sequence[Mapping[str, Any]],
        customers: Mapping[str, np.ndarray],
        terminals: Mapping[str, TerminalState],
    ) -> BatchFeatures:
        """Features of `events` in order, given the state before the batch.

        `customers` / `terminals` hold the state of every entity the batch touches
        (missing = never seen). The inputs are not modified.
        """
        feats = np.full((len(events), N_FEATURES), np.nan, dtype=np.float64)
        current: dict[str, np.ndarray] = {}
        changed: dict[str, np.ndarray] = {}
        terminal_tx: list[tuple[str, int, str]] = []
        repeats = np.zeros(len(events), dtype=bool)
        empty_term = TerminalState()
        # Terminal features depend only on (terminal, day) and the state before the batch.
        term_rows: dict[tuple[str, int], np.ndarray] = {}
        term_idx = np.array([_IDX[f"term_{kind}_{d}d"] for d in TERMINAL_WINDOWS for kind in ("n", "risk")])
        for i, ev in enumerate(events):
            row = feats[i]
            cid = ev["customer_id"]
            hist = current.get(cid)
            if hist is None:
                hist = customers.get(cid, empty_history())
            self.event_only(ev, row)
            new, repeats[i] = self.customer(hist, ev, row)
            if new is not None:
                current[cid] = changed[cid] = new
                terminal_tx.append((ev["terminal_id"], int(ev["event_time"]) // DAY_MS, ev["transaction_id"]))
            else:
                current[cid] = hist
            key = (ev["terminal_id"], int(ev["event_time"]) // DAY_MS)
            cached = term_rows.get(key)
            if cached is None:
                self.terminal(terminals.get(key[0], empty_term), int(ev["event_time"]), row)
                term_rows[key] = row[term_idx].copy()
            else:
                row[term_idx] = cached
        return BatchFeatures(feats.astype(np.float32), changed, terminal_tx, repeats)


class OfflineFeatures:
    """In-memory state for training, evaluation and backtests."""

    def __init__(self, engine: FeatureEngine) -> None:
        self.engine = engine
        self.customers: dict[str, np.ndarray] = {}
        self.terminals: dict[str, TerminalState] = {}
        self._counted: set[str] = set()
        self._labelled: set[str] = set()

    def apply_label(self, transaction_id: str, terminal_id: str, event_time: int, is_fraud: bool) -> None:
        """A fraud report, counted once per transaction id."""
        if not is_fraud or transaction_id in self._labelled:
            return
        self._labelled.add(transaction_id)
        state = self.terminals.setdefault(terminal_id, TerminalState())
        day = event_time // DAY_MS
        state.fraud[day] = state.fraud.get(day, 0) + 1

    def process(self, events: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Features of a batch, then the state updated as the online store would."""
        result = self.engine.transform(events, self.customers, self.terminals)
        self.customers.update(result.customers)
        for tid, day, txid in result.terminal_tx:
            if txid in self._counted:
                continue
            self._counted.add(txid)
            state = self.terminals.setdefault(tid, TerminalState())
            state.tx[day] = state.tx.get(day, 0) + 1
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
