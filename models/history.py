"""Customer features from a window of the card's previous records and its day buckets,
column-wise over a batch (the state: `models.card`)."""

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


def day_windows(out: np.ndarray, ev: Events, window: np.ndarray, valid: np.ndarray, buckets: np.ndarray) -> None:
    """The windows past EXACT_WINDOWS, by whole UTC days (the event's and the days before it):
    every earlier record of the card counts, from the window or from its day's bucket."""
    day = (ev.ts // DAY_MS)[:, None]
    rec_day = window["ts"] // DAY_MS
    b_day, b_n, b_sum = buckets["day"], buckets["n"].astype(np.int64), buckets["sum"]
    for j in range(EXACT_WINDOWS, len(SPANS)):
        lo = day - int(SPANS[j] // DAY_MS) + 1
        inside = valid & (rec_day >= lo) & (rec_day <= day)
        held = (b_day >= lo) & (b_day <= day)
        counts = inside.sum(axis=1) + np.where(held, b_n, 0).sum(axis=1)
        cents = np.where(inside, window["amount"], 0).sum(axis=1) + np.where(held, b_sum, 0).sum(axis=1)
        out[:, CUST_N[j]] = counts
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, CUST_MEAN[j]] = np.where(counts > 0, (cents / 100.0) / np.maximum(counts, 1), math.nan)


def customer_block(out: np.ndarray, ev: Events, window: np.ndarray, valid: np.ndarray) -> None:
    """Customer features of n events from their last records (`window`, `valid` as in
    `models.features.card_block`): the exact-time windows, time since the last record, devices, distance."""
    ts = ev.ts[:, None]
    t_prev = window["ts"]
    age = valid & (t_prev > ts - HISTORY_DAYS * DAY_MS)
    amounts = window["amount"] / 100.0
    for j, span in enumerate(SPANS[:EXACT_WINDOWS].tolist()):
        inside = age & (t_prev > ts - span)
        counts = inside.sum(axis=1)
        sums = np.where(inside, amounts, 0.0).sum(axis=1)
        out[:, CUST_N[j]] = counts
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, CUST_MEAN[j]] = np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)
    rows = np.arange(len(ts))
    width = window.shape[1]
    has_prev = age.any(axis=1)
    last = width - 1 - np.argmax(age[:, ::-1], axis=1)
    out[:, IDX["secs_since_prev"]] = np.where(has_prev, (ev.ts - t_prev[rows, last]) / 1000.0, math.nan)
    dev = ev.dev[:, None]
    d_prev = window["dev"]
    has_dev = ev.dev != 0
    out[:, IDX["device_missing"]] = (~has_dev).astype(np.float64)
    out[:, IDX["device_new"]] = (has_dev & has_prev & ~(age & (d_prev == dev)).any(axis=1)).astype(np.float64)
    day = age & (t_prev > ts - DAY_MS) & (d_prev != 0)
    ranked = np.sort(np.where(day, d_prev, 0), axis=1)
    distinct = (ranked[:, 0] != 0).astype(np.int64) + ((ranked[:, 1:] != ranked[:, :-1]) & (ranked[:, 1:] != 0)).sum(axis=1)
    out[:, IDX["cust_devices_1d"]] = distinct + (has_dev & ~(day & (d_prev == dev)).any(axis=1))
    located = age & ~np.isnan(window["lat"])
    last_loc = width - 1 - np.argmax(located[:, ::-1], axis=1)
    ok = located.any(axis=1) & ~np.isnan(ev.lat)
    lat1, lon1, t1 = window["lat"][rows, last_loc], window["lon"][rows, last_loc], t_prev[rows, last_loc]
    dist = np.where(ok, haversine_km(lat1, lon1, ev.lat, ev.lon), math.nan)
    hours = np.maximum((ev.ts - t1) / HOUR_MS, 1 / 60)  # at least a minute apart
    out[:, IDX["dist_prev_km"]] = dist
    out[:, IDX["speed_kmh"]] = np.where(ok, dist / hours, math.nan)


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
