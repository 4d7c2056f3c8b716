"""Customer features from a window of the card's previous records and its day buckets,
column-wise over a batch (the state: `models.card`): what each event reads of its card
(`CustomerReads`), then the features computed from that."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.featureset import (
    CUST_MEAN,
    CUST_N,
    EXACT_WINDOWS,
    HISTORY_DAYS,
    HISTORY_DTYPE,
    IDX,
    RECENT,
    SPANS,
    stable_hashes,
)
from models.units import DAY_MS, HOUR_MS


def finite_or_nan(values: list[Any]) -> np.ndarray:
    """Optional floats as float64: None and non-finite values become NaN."""
    out = np.array(values, dtype=np.float64)
    out[~np.isfinite(out)] = math.nan
    return out


@dataclass(frozen=True, slots=True)
class Events:
    """Column arrays of a batch of events."""

    ts: np.ndarray  # int64 ms
    amount: np.ndarray  # int64 minor units
    lat: np.ndarray
    lon: np.ndarray
    dev: np.ndarray  # uint64, 0 = no device
    tx: np.ndarray  # uint64 hash of the transaction id
    src: np.ndarray  # uint64 delivery id, 0 offline

    @staticmethod
    def of(events: Sequence[Mapping[str, Any]], sources: Sequence[int] | None = None) -> Events:
        n = len(events)
        devices = [e.get("device_id") or "" for e in events]
        dev = stable_hashes(devices)
        dev[[not d for d in devices]] = 0
        return Events(
            ts=np.fromiter((e["event_time"] for e in events), np.int64, n),
            amount=np.fromiter((e["amount"] for e in events), np.int64, n),
            lat=finite_or_nan([e.get("latitude") for e in events]),
            lon=finite_or_nan([e.get("longitude") for e in events]),
            dev=dev,
            tx=stable_hashes([e["transaction_id"] for e in events]),
            src=np.zeros(n, np.uint64) if sources is None else np.fromiter(sources, np.uint64, n),
        )

    def records(self, rows: np.ndarray | slice) -> np.ndarray:
        """History records of the given events."""
        rec = np.empty(len(self.ts[rows]), dtype=HISTORY_DTYPE)
        for name, col in (
            ("tx", self.tx),
            ("ts", self.ts),
            ("amount", self.amount),
            ("lat", self.lat),
            ("lon", self.lon),
            ("dev", self.dev),
            ("src", self.src),
        ):
            rec[name] = col[rows]
        return rec


@dataclass(frozen=True, slots=True)
class CustomerReads:
    """What n events' customer features read of their cards, before any arithmetic that rounds:
    gathered by numpy (`customer_reads`, the reference) or by the compiled kernel
    (`models.cardkernel`), then turned into features by the one function both share
    (`customer_values`), so the two paths agree bit for bit."""

    exact: np.ndarray  # (EXACT_WINDOWS, n, RECENT) float64: each exact window's amounts (major units), 0.0 outside
    counts: np.ndarray  # (n, len(SPANS)) int64: records in each window
    cents: np.ndarray  # (n, len(SPANS) - EXACT_WINDOWS) int64: the day windows' amounts, minor units
    has_prev: np.ndarray  # (n,) bool: a record younger than HISTORY_DAYS
    last_ts: np.ndarray  # (n,) int64: the last such record's time
    device_new: np.ndarray  # (n,) bool
    devices_1d: np.ndarray  # (n,) int64: distinct devices of the last day, the event's included
    located: np.ndarray  # (n,) bool: the event and one of those records have a location
    loc_lat: np.ndarray  # (n,) float64: the last located record's latitude
    loc_lon: np.ndarray
    loc_ts: np.ndarray  # (n,) int64


def customer_reads(ev: Events, window: np.ndarray, valid: np.ndarray, buckets: np.ndarray) -> CustomerReads:
    """What the customer features read (numpy: the reference). `window` (n, W) HISTORY_DTYPE and
    `valid` as in `models.features.card_block`; its last RECENT columns are the recent records."""
    recent, ok = window[:, -RECENT:], valid[:, -RECENT:]
    ts = ev.ts[:, None]
    t_prev = recent["ts"]
    age = ok & (t_prev > ts - HISTORY_DAYS * DAY_MS)
    amounts = recent["amount"] / 100.0
    exact = np.stack([np.where(age & (t_prev > ts - span), amounts, 0.0) for span in SPANS[:EXACT_WINDOWS].tolist()])
    counts = [(age & (t_prev > ts - span)).sum(axis=1) for span in SPANS[:EXACT_WINDOWS].tolist()]
    # The windows past EXACT_WINDOWS, by whole UTC days (the event's and the days before it):
    # every earlier record of the card counts, from the window or from its day's bucket.
    day = (ev.ts // DAY_MS)[:, None]
    rec_day = window["ts"] // DAY_MS
    b_day, b_n, b_sum = buckets["day"], buckets["n"].astype(np.int64), buckets["sum"]
    cents = []
    for j in range(EXACT_WINDOWS, len(SPANS)):
        lo = day - int(SPANS[j] // DAY_MS) + 1
        inside = valid & (rec_day >= lo) & (rec_day <= day)
        held = (b_day >= lo) & (b_day <= day)
        counts.append(inside.sum(axis=1) + np.where(held, b_n, 0).sum(axis=1))
        cents.append(np.where(inside, window["amount"], 0).sum(axis=1) + np.where(held, b_sum, 0).sum(axis=1))
    rows, width = np.arange(len(ts)), RECENT
    last = width - 1 - np.argmax(age[:, ::-1], axis=1)
    dev, d_prev = ev.dev[:, None], recent["dev"]
    has_prev = np.asarray(age.any(axis=1))
    day_dev = age & (t_prev > ts - DAY_MS) & (d_prev != 0)
    ranked = np.sort(np.where(day_dev, d_prev, 0), axis=1)
    distinct = (ranked[:, 0] != 0).astype(np.int64) + ((ranked[:, 1:] != ranked[:, :-1]) & (ranked[:, 1:] != 0)).sum(axis=1)
    located = age & ~np.isnan(recent["lat"])
    last_loc = width - 1 - np.argmax(located[:, ::-1], axis=1)
    return CustomerReads(
        exact=exact,
        counts=np.stack(counts, axis=1),
        cents=np.stack(cents, axis=1),
        has_prev=has_prev,
        last_ts=t_prev[rows, last],
        device_new=(ev.dev != 0) & has_prev & ~(age & (d_prev == dev)).any(axis=1),
        devices_1d=distinct + ((ev.dev != 0) & ~(day_dev & (d_prev == dev)).any(axis=1)),
        located=located.any(axis=1) & ~np.isnan(ev.lat),
        loc_lat=recent["lat"][rows, last_loc],
        loc_lon=recent["lon"][rows, last_loc],
        loc_ts=t_prev[rows, last_loc],
    )


def customer_values(out: np.ndarray, ev: Events, r: CustomerReads) -> None:
    """The customer features of n events from what they read: the windows, the amount against the
    30-day mean, time since the last record, devices, distance and speed (the arithmetic both
    paths share)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(len(SPANS)):
            counts = r.counts[:, j]
            total = r.exact[j].sum(axis=1) if j < EXACT_WINDOWS else r.cents[:, j - EXACT_WINDOWS] / 100.0
            out[:, CUST_N[j]] = counts
            out[:, CUST_MEAN[j]] = np.where(counts > 0, total / np.maximum(counts, 1), math.nan)
        mean_30 = out[:, IDX["cust_mean_30d"]]
        amount = ev.amount / 100.0
        out[:, IDX["amount_over_mean_30d"]] = np.where(mean_30 > 0, amount / np.where(mean_30 > 0, mean_30, 1.0), math.nan)
    out[:, IDX["secs_since_prev"]] = np.where(r.has_prev, (ev.ts - r.last_ts) / 1000.0, math.nan)
    out[:, IDX["device_missing"]] = (ev.dev == 0).astype(np.float64)
    out[:, IDX["device_new"]] = r.device_new.astype(np.float64)
    out[:, IDX["cust_devices_1d"]] = r.devices_1d
    dist = np.where(r.located, haversine_km(r.loc_lat, r.loc_lon, ev.lat, ev.lon), math.nan)
    hours = np.maximum((ev.ts - r.loc_ts) / HOUR_MS, 1 / 60)  # at least a minute apart
    out[:, IDX["dist_prev_km"]] = dist
    out[:, IDX["speed_kmh"]] = np.where(r.located, dist / hours, math.nan)


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        p1, p2 = np.radians(lat1), np.radians(lat2)
        dp, dl = p2 - p1, np.radians(lon2 - lon1)
        a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
        result: np.ndarray = 2 * 6371.0 * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return result


def padded(prev: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One event's previous records as a (1, width) window and its valid mask."""
    window = np.zeros((1, width), dtype=HISTORY_DTYPE)
    valid = np.zeros((1, width), dtype=bool)
    k = min(len(prev), width)
    if k:
        window[0, width - k :] = prev[-k:]
        valid[0, width - k :] = True
    return window, valid
