"""What a batch's events read of their cards, compiled (numba): the hot path of the feature engine.

Per event, its card's previous records are the ring's (oldest first) then the card's earlier
events of the batch; `reads` walks them in place, without building the (n, W) windows of
structured records the numpy reference builds (`models.history.customer_reads`,
`models.sequence.sequence_steps`), and returns the same `CustomerReads` and `Steps`. Only
gathering, comparing, counting and integer sums happen here: every operation that rounds
(a sum of floats, a logarithm, the haversine) stays in numpy, in the functions both paths
share (`models.history.customer_values`, `models.sequence.sequence_values`), so the compiled path equals the reference bit for bit
whatever the machine's vector maths (tests/unit/test_kernels.py holds it to that).

Like `FeatureEngine._vectorised`, it declines (None) a batch holding an event that is not
new to its card or older than one of the card's records: those take the event-by-event path.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from models.featureset import DAY_BUCKETS, EXACT_WINDOWS, HISTORY_DAYS, RECENT, RING_RECORDS, SPANS
from models.history import CustomerReads, Events
from models.sequence import SEQ_LEN, Steps
from models.units import DAY_MS

if RECENT < SEQ_LEN:  # pragma: no cover - a layout check: the kernel assumes a full sequence from RECENT records
    raise ImportError(f"models.cardreads needs RECENT ({RECENT}) >= SEQ_LEN ({SEQ_LEN})")
_LO = RECENT + 1 - SEQ_LEN  # the first of the recent records and the event that is a step
_AGE_MS = HISTORY_DAYS * DAY_MS
_SPANS = SPANS.astype(np.int64)
_EXACT_SPANS = _SPANS[:EXACT_WINDOWS].copy()
_DAY_SPANS = (_SPANS[EXACT_WINDOWS:] // DAY_MS).copy()


@njit(cache=True, nogil=True)
def _windows(cust: np.ndarray, cards: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per card its events in batch order (`order[start[u]:]`), per event its rank among them."""
    n = cust.shape[0]
    per = np.zeros(cards, np.int64)
    for i in range(n):
        per[cust[i]] += 1
    start = np.zeros(cards, np.int64)
    acc, most = 0, 0
    for u in range(cards):
        start[u] = acc
        acc += per[u]
        most = max(most, per[u])
    order, rank, fill = np.empty(n, np.int64), np.empty(n, np.int64), np.zeros(cards, np.int64)
    for i in range(n):
        u = cust[i]
        rank[i] = fill[u]
        order[start[u] + fill[u]] = i
        fill[u] += 1
    return order, rank, start, most


@njit(cache=True, nogil=True)
def _reads(
    count: np.ndarray, r_tx: np.ndarray, r_ts: np.ndarray, r_amount: np.ndarray, r_lat: np.ndarray, r_lon: np.ndarray,
    r_dev: np.ndarray, b_day: np.ndarray, b_n: np.ndarray, b_sum: np.ndarray,
    cust: np.ndarray, tx: np.ndarray, ts: np.ndarray, amount: np.ndarray, lat: np.ndarray, lon: np.ndarray, dev: np.ndarray,
    exact: np.ndarray, counts: np.ndarray, cents: np.ndarray, flags: np.ndarray, last_ts: np.ndarray,
    devices_1d: np.ndarray, loc: np.ndarray, loc_ts: np.ndarray, step: np.ndarray, step_f: np.ndarray, step_b: np.ndarray,
) -> bool:  # fmt: skip
    order, rank, start, most = _windows(cust, count.shape[0])
    width = RING_RECORDS + most
    w_tx, w_ts, w_amount, w_dev = (
        np.empty(width, np.int64),
        np.empty(width, np.int64),
        np.empty(width, np.int64),
        np.empty(width, np.int64),
    )
    w_lat, w_lon = np.empty(width), np.empty(width)
    ok, day_dev = np.zeros(RECENT + 1, np.bool_), np.zeros(RECENT, np.bool_)
    for i in range(cust.shape[0]):
        u, t = cust[i], ts[i]
        held = min(count[u], RING_RECORDS)
        for p in range(held):
            slot = (count[u] - held + p) % RING_RECORDS
            w_tx[p], w_ts[p], w_amount[p] = r_tx[u, slot], r_ts[u, slot], r_amount[u, slot]
            w_lat[p], w_lon[p], w_dev[p] = r_lat[u, slot], r_lon[u, slot], r_dev[u, slot]
        for q in range(rank[i]):
            j, p = order[start[u] + q], held + q
            w_tx[p], w_ts[p], w_amount[p], w_lat[p], w_lon[p], w_dev[p] = tx[j], ts[j], amount[j], lat[j], lon[j], dev[j]
        size = held + rank[i]
        day = t // DAY_MS
        for p in range(size):
            if w_tx[p] == tx[i] or w_ts[p] > t:
                return False  # a re-delivery, a repeated id or a late event
        for b in range(DAY_BUCKETS):
            if b_n[u, b] > 0 and b_day[u, b] > day:
                return False
        # The windows by whole days: every record of the window, then the day buckets.
        for j in range(_DAY_SPANS.shape[0]):
            lo = day - _DAY_SPANS[j] + 1
            c, s = 0, 0
            for p in range(size):
                d = w_ts[p] // DAY_MS
                if lo <= d <= day:
                    c += 1
                    s += w_amount[p]
            for b in range(DAY_BUCKETS):
                if lo <= b_day[u, b] <= day:
                    c += b_n[u, b]
                    s += b_sum[u, b]
            counts[i, EXACT_WINDOWS + j], cents[i, j] = c, s
        # The recent records: the last RECENT of the window (position q of RECENT; before 0: padding).
        first = size - RECENT
        new_dev, devs, in_day, loc_at, last = dev[i] != 0, 0, False, -1, -1
        for q in range(RECENT):
            p = first + q
            ok[q] = p >= 0 and w_ts[p] > t - _AGE_MS
            for j in range(EXACT_WINDOWS):
                inside = ok[q] and w_ts[p] > t - _EXACT_SPANS[j]
                exact[j, i, q] = w_amount[p] / 100.0 if inside else 0.0
                counts[i, j] += inside
            day_dev[q] = ok[q] and w_ts[p] > t - DAY_MS and w_dev[p] != 0
            if not ok[q]:
                continue
            last = p
            new_dev = new_dev and w_dev[p] != dev[i]
            if not math.isnan(w_lat[p]):
                loc_at = p
            if day_dev[q]:
                in_day = in_day or w_dev[p] == dev[i]
                devs += 1
                for r in range(q):  # counted already, from an earlier record of the day
                    if day_dev[r] and w_dev[first + r] == w_dev[p]:
                        devs -= 1
                        break
        devices_1d[i] = devs + (dev[i] != 0 and not in_day)
        flags[i, 0], flags[i, 1] = last >= 0, last >= 0 and new_dev
        last_ts[i] = w_ts[last] if last >= 0 else 0
        flags[i, 2] = loc_at >= 0 and not math.isnan(lat[i])
        loc[i, 0], loc[i, 1] = (w_lat[loc_at], w_lon[loc_at]) if loc_at >= 0 else (math.nan, math.nan)
        loc_ts[i] = w_ts[loc_at] if loc_at >= 0 else 0
        # The steps: the recent records from _LO on, then the event (always live), each after the one before.
        ok[RECENT] = True
        for s in range(SEQ_LEN):
            e = _LO + s
            p = first + e
            if e == RECENT:
                step[i, s, 0], step[i, s, 1], step[i, s, 2], step_f[i, s, 0], step_f[i, s, 1] = (
                    t,
                    amount[i],
                    dev[i],
                    lat[i],
                    lon[i],
                )
            elif ok[e]:
                step[i, s, 0], step[i, s, 1], step[i, s, 2] = w_ts[p], w_amount[p], w_dev[p]
                step_f[i, s, 0], step_f[i, s, 1] = w_lat[p], w_lon[p]
            else:
                step[i, s, 0], step[i, s, 1], step[i, s, 2], step_f[i, s, 0], step_f[i, s, 1] = 0, 0, 0, 0.0, 0.0
            if ok[e - 1]:
                step[i, s, 3], step_f[i, s, 2], step_f[i, s, 3] = w_ts[p - 1], w_lat[p - 1], w_lon[p - 1]
            else:
                step[i, s, 3], step_f[i, s, 2], step_f[i, s, 3] = 0, math.nan, math.nan
            seen = False
            for m in range(e):
                if ok[m] and w_dev[first + m] == step[i, s, 2]:
                    seen = True
                    break
            step_b[i, s, 0], step_b[i, s, 1], step_b[i, s, 2] = ok[e], ok[e - 1], seen
    return True


def reads(ev: Events, cust: np.ndarray, cards: np.ndarray) -> tuple[CustomerReads, Steps] | None:
    """What events read of their cards: event i of card `cust[i]` of the (U,) CARD_DTYPE `cards`
    (the state before the batch). None when an event is not new to its card or older than
    one of its records (the event-by-event path decides those)."""
    n = len(cust)
    ring, days = cards["ring"], cards["days"]
    exact = np.empty((EXACT_WINDOWS, n, RECENT))
    counts = np.zeros((n, len(SPANS)), np.int64)
    cents = np.empty((n, len(SPANS) - EXACT_WINDOWS), np.int64)
    flags = np.empty((n, 3), np.bool_)
    last_ts, devices_1d, loc_ts = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    loc = np.empty((n, 2))
    step, step_f, step_b = np.empty((n, SEQ_LEN, 4), np.int64), np.empty((n, SEQ_LEN, 4)), np.empty((n, SEQ_LEN, 3), np.bool_)
    i64 = np.int64
    done = _reads(
        cards["seq"].astype(i64), ring["tx"].view(i64), ring["ts"], ring["amount"], ring["lat"], ring["lon"],
        ring["dev"].view(i64), days["day"], days["n"], days["sum"],
        np.ascontiguousarray(cust, dtype=i64), ev.tx.view(i64), ev.ts, ev.amount, ev.lat, ev.lon, ev.dev.view(i64),
        exact, counts, cents, flags, last_ts, devices_1d, loc, loc_ts, step, step_f, step_b,
    )  # fmt: skip
    if not done:
        return None
    customer = CustomerReads(
        exact, counts, cents, flags[:, 0], last_ts, flags[:, 1], devices_1d, flags[:, 2], loc[:, 0], loc[:, 1], loc_ts
    )
    steps = Steps(
        step[:, :, 0], step[:, :, 1], step_f[:, :, 0], step_f[:, :, 1], step[:, :, 2].view(np.uint64),
        step[:, :, 3], step_f[:, :, 2], step_f[:, :, 3], step_b[:, :, 0], step_b[:, :, 1], step_b[:, :, 2],
    )  # fmt: skip
    return customer, steps


def warm_up() -> None:
    """Compile (or load from the cache) before the first batch, with the layouts a batch has."""
    from models.featureset import CARD_DTYPE, HISTORY_DTYPE

    records = np.zeros(2, dtype=HISTORY_DTYPE)
    reads(
        Events(*(records[f].copy() for f in ("ts", "amount", "lat", "lon", "dev", "tx", "src"))),
        np.arange(2),
        np.zeros(2, CARD_DTYPE),
    )
