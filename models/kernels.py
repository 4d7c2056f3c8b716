"""Compiled batch kernels (numba), each checked bit for bit against its pure-Python reference.

`walk` scores rows down the booster's trees (`models.xgb.Forest`). `append_many` applies a
batch's new records to its cards at once: what `models.card.append`
does one record at a time (the reference, kept for the offline reading of the rules and for
the tests), compiled over the cards' field arrays. Compiled once per machine and cached
(`cache=True`: the machine code is kept beside this file in __pycache__), so a service pays
the compilation on its first start only; `warm_up` compiles before the first batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from models.featureset import DAY_BUCKETS, RING_RECORDS
from models.units import DAY_MS

_BLOCK = 16  # rows walked together down a tree


@njit(cache=True, nogil=True)
def _append(
    seq: np.ndarray,
    ring_tx: np.ndarray,
    ring_ts: np.ndarray,
    ring_amount: np.ndarray,
    ring_lat: np.ndarray,
    ring_lon: np.ndarray,
    ring_dev: np.ndarray,
    ring_src: np.ndarray,
    day_day: np.ndarray,
    day_n: np.ndarray,
    day_sum: np.ndarray,
    owner: np.ndarray,
    tx: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    dev: np.ndarray,
    src: np.ndarray,
) -> int:
    added = 0
    for i in range(owner.shape[0]):
        u = owner[i]
        count = seq[u]
        start = count - RING_RECORDS if count > RING_RECORDS else 0
        held = False
        for s in range(start, count):
            if ring_tx[u, s % RING_RECORDS] == tx[i]:
                held = True
                break
        if held:
            continue
        slot = count % RING_RECORDS
        if count >= RING_RECORDS:
            day = ring_ts[u, slot] // DAY_MS
            b = day % DAY_BUCKETS
            if day_day[u, b] <= day:
                if day_day[u, b] != day:
                    day_day[u, b] = day
                    day_n[u, b] = 0
                    day_sum[u, b] = 0
                day_n[u, b] += 1
                day_sum[u, b] += ring_amount[u, slot]
        ring_tx[u, slot] = tx[i]
        ring_ts[u, slot] = ts[i]
        ring_amount[u, slot] = amount[i]
        ring_lat[u, slot] = lat[i]
        ring_lon[u, slot] = lon[i]
        ring_dev[u, slot] = dev[i]
        ring_src[u, slot] = src[i]
        seq[u] = count + 1
        added += 1
    return added


def append_many(cards: np.ndarray, owner: np.ndarray, records: np.ndarray) -> int:
    """Append HISTORY_DTYPE `records` in order, record i to card `owner[i]` of the (U,)
    CARD_DTYPE array `cards` (updated in place); ids already in a ring are skipped. Returns
    how many were appended. Same result as `models.card.append` record by record."""
    if not len(records):
        return 0
    ring, days = cards["ring"], cards["days"]
    added: int = _append(
        cards["seq"], ring["tx"], ring["ts"], ring["amount"], ring["lat"], ring["lon"], ring["dev"], ring["src"],
        days["day"], days["n"], days["sum"], np.ascontiguousarray(owner, dtype=np.int64),
        records["tx"], records["ts"], records["amount"], records["lat"], records["lon"], records["dev"], records["src"],
    )  # fmt: skip
    return added


@njit(cache=True, nogil=True)
def walk(
    x: np.ndarray, roots: np.ndarray, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray, right: np.ndarray,
    default_left: np.ndarray, value: np.ndarray, base: np.float32, depth: int, margins: np.ndarray, leaves: np.ndarray,
) -> None:  # fmt: skip
    """Every (n, F) float32 row down every tree of `models.xgb.Forest`'s flat arrays (a leaf
    points to itself): its leaf per tree into `leaves` (n, T) and its margin into `margins`
    (n,), summed tree by tree in float32 from `base` — what `Forest.walk_numpy` computes
    (the reference) and XGBoost too, bit for bit."""
    n = x.shape[0]
    margins[:] = base
    nodes = np.empty(_BLOCK, np.intp)
    for t in range(roots.shape[0]):  # a tree at a time: its nodes stay in cache
        for start in range(0, n, _BLOCK):  # a block of rows a level at a time: independent walks overlap
            rows = min(_BLOCK, n - start)
            nodes[:rows] = roots[t]
            for _ in range(depth):  # as many steps for every row (a leaf points to itself)
                for r in range(rows):
                    node = nodes[r]
                    v = x[start + r, feature[node]]
                    go_left = (v < threshold[node]) | (default_left[node] & (v != v))
                    nodes[r] = left[node] if go_left else right[node]
            for r in range(rows):
                margins[start + r] += value[nodes[r]]
                leaves[start + r, t] = nodes[r] - roots[t]


def warm_up() -> None:
    """Compile (or load from the cache) the card kernels before the first batch: these and the
    card reads (`models.cardreads`). Two cards and two records: numba compiles per memory
    layout, and numpy calls a one-element view contiguous. (`walk` is compiled when a model
    loads: `Forest.build` checks it against XGBoost.)"""
    from models import cardreads
    from models.featureset import CARD_DTYPE, HISTORY_DTYPE

    append_many(np.zeros(2, CARD_DTYPE), np.zeros(2, np.int64), np.zeros(2, dtype=HISTORY_DTYPE))
    cardreads.warm_up()
