"""The card's recent sequence: the input of the deep stage's sequence encoder.

Per event, its customer's last `SEQ_LEN - 1` records younger than `HISTORY_DAYS` then the
event itself, oldest first and right-aligned (missing steps are all zeros), each step
described by the `SEQ_FIELDS` below. Computed by the feature engine from the card's last
`RECENT` records, as the exact-time customer features, so online and offline agree bit for bit; the
scorer carries it in the buffer record and stage 2 reads it from there (not from Redis,
where later events may already have been appended). The stored history holds no
terminal or channel, so neither is a step field: adding them needs a new feature set.

Changing a field, its order or `SEQ_LEN` changes the deep model's input: bump SEQUENCE_VERSION.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.featureset import HISTORY_DAYS, HISTORY_DTYPE
from models.history import Events, haversine_km
from models.units import DAY_MS, HOUR_MS

SEQUENCE_VERSION = "seq2"
SEQ_LEN = 16
SEQ_FIELDS: tuple[str, ...] = (
    "present",  # 1 for a real step
    "log_amount",  # log1p(amount, major units)
    "log_gap_s",  # log1p(seconds since the step before it), 0 for the card's first record
    "log_age_s",  # log1p(seconds before the current event)
    "has_device",
    "device_first_seen",  # no earlier record of the card's last RECENT has this device
    "device_is_current",  # the current event's device
    "log_dist_km",  # log1p(km from the step before it), 0 when either has no location
    "located",
    "hour",  # hour of day / 24
)
N_SEQ = len(SEQ_FIELDS)
SEQ_WIDTH = SEQ_LEN * N_SEQ  # the flattened length carried in buffer records


@dataclass(frozen=True, slots=True)
class Steps:
    """The k = min(SEQ_LEN, W + 1) last steps of n events' sequences (their previous records then
    the event), each with the step before it: gathered by numpy (`sequence_steps`, the
    reference) or by the compiled kernel (`models.cardkernel`), turned into the sequence by
    the one function both share (`sequence_values`). Fields of a step that is not `live` are
    never read."""

    ts: np.ndarray  # (n, k) int64
    amount: np.ndarray  # (n, k) int64 minor units
    lat: np.ndarray  # (n, k) float64
    lon: np.ndarray
    dev: np.ndarray  # (n, k) uint64
    prev_ts: np.ndarray  # (n, k) the step before each
    prev_lat: np.ndarray
    prev_lon: np.ndarray
    live: np.ndarray  # (n, k) bool: a real step younger than HISTORY_DAYS (the event always)
    prev_live: np.ndarray  # (n, k) bool: the step before it is
    seen: np.ndarray  # (n, k) bool: an earlier live step of the window has the step's device


def sequence_steps(ev: Events, window: np.ndarray, valid: np.ndarray) -> Steps:
    """The steps of n events from their previous records (numpy: the reference). `window`
    (n, W) HISTORY_DTYPE and `valid` (n, W): the recent records, as for `models.history`."""
    n, width = window.shape
    ext = np.empty((n, width + 1), dtype=HISTORY_DTYPE)
    ext[:, :width] = window
    ext[:, width] = ev.records(slice(None))
    ts = ev.ts[:, None]
    ok = np.concatenate([valid & (window["ts"] > ts - HISTORY_DAYS * DAY_MS), np.ones((n, 1), bool)], axis=1)
    k = min(SEQ_LEN, width + 1)
    lo = width + 1 - k
    step, live = ext[:, lo:], ok[:, lo:]
    prev, prev_ok = ext[:, lo - 1 : width], ok[:, lo - 1 : width]
    if lo == 0:  # a window shorter than the sequence: the first step has no predecessor
        prev = np.concatenate([np.zeros((n, 1), HISTORY_DTYPE), ext[:, :width]], axis=1)
        prev_ok = np.concatenate([np.zeros((n, 1), bool), ok[:, :width]], axis=1)
    dev = step["dev"]
    earlier = (np.arange(width + 1)[None, None, :] < np.arange(lo, width + 1)[None, :, None]) & ok[:, None, :]
    seen = (earlier & (ext["dev"][:, None, :] == dev[:, :, None])).any(axis=2)
    return Steps(
        step["ts"], step["amount"], step["lat"], step["lon"], dev, prev["ts"], prev["lat"], prev["lon"], live, prev_ok, seen
    )


def sequence_values(out: np.ndarray, ev: Events, s: Steps) -> None:
    """Fill `out` (n, SEQ_LEN, N_SEQ) float64 from the steps (the arithmetic both paths share)."""
    k = s.ts.shape[1]
    located = ~np.isnan(s.lat)
    both = s.live & s.prev_live & located & ~np.isnan(s.prev_lat)
    dist = np.zeros(both.shape)  # read only where both are located (the haversine is most of this function's time)
    dist[both] = haversine_km(s.prev_lat[both], s.prev_lon[both], s.lat[both], s.lon[both])
    has = s.dev != 0
    fields = (
        np.ones(s.live.shape),
        np.log1p(s.amount / 100.0),
        np.where(s.prev_live, np.log1p(np.maximum(s.ts - s.prev_ts, 0) / 1000.0), 0.0),
        np.log1p(np.maximum(ev.ts[:, None] - s.ts, 0) / 1000.0),
        has,
        has & ~s.seen,
        has & (s.dev == ev.dev[:, None]),
        np.where(both, np.log1p(np.nan_to_num(dist)), 0.0),
        located,
        (s.ts % DAY_MS) / HOUR_MS / 24.0,
    )
    tail = out[:, SEQ_LEN - k :]
    for f, values in enumerate(fields):
        tail[:, :, f] = np.where(s.live, values, 0.0)
    out[:, : SEQ_LEN - k] = 0.0
