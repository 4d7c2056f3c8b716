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


def sequence_block(out: np.ndarray, ev: Events, window: np.ndarray, valid: np.ndarray) -> None:
    """Fill `out` (n, SEQ_LEN, N_SEQ) for n events from their previous records.

    `window` (n, W) HISTORY_DTYPE and `valid` (n, W): as for `models.history.customer_block`.
    """
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
    located = ~np.isnan(step["lat"])
    both = live & prev_ok & located & ~np.isnan(prev["lat"])
    dist = haversine_km(prev["lat"], prev["lon"], step["lat"], step["lon"])
    fields = (
        np.ones((n, k)),
        np.log1p(step["amount"] / 100.0),
        np.where(prev_ok, np.log1p(np.maximum(step["ts"] - prev["ts"], 0) / 1000.0), 0.0),
        np.log1p(np.maximum(ts - step["ts"], 0) / 1000.0),
        dev != 0,
        (dev != 0) & ~seen,
        (dev != 0) & (dev == ev.dev[:, None]),
        np.where(both, np.log1p(np.nan_to_num(dist)), 0.0),
        located,
        (step["ts"] % DAY_MS) / HOUR_MS / 24.0,
    )
    block = np.stack([np.asarray(f, dtype=np.float64) for f in fields], axis=2)
    out[:, SEQ_LEN - k :] = np.where(live[:, :, None], block, 0.0)
    out[:, : SEQ_LEN - k] = 0.0
