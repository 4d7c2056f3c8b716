"""The feature set: names, state layouts, and the helpers both feature stores share.

State (see `models.features` for how it is computed):
- customer: one fixed-size record per card (`CARD_DTYPE`, `models.card`): its last
  `RING_RECORDS` records (`HISTORY_DTYPE`) and, per UTC day, the count and amount of the
  records that left them. An event sees its card's last `RECENT` records (those younger than
  `HISTORY_DAYS` count) for the 1 h / 1 d windows, devices, distance and the sequence, and
  every record of its card (ring and days) for the 7 d / 30 d windows, counted by day.
- terminal: per UTC day, the number of transactions and of reported frauds, in a
  ring of `RING_DAYS` slots (`RING_DTYPE`).

Changing a name, a layout or `stable_hashes` changes stored state: bump FEATURE_SET_VERSION.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from models.units import DAY_MS, HOUR_MS

FEATURE_SET_VERSION = "fs2"
# Days a fraud report takes to arrive, when neither the data nor a model version says otherwise:
# terminal risk only reads days older than the delay.
DEFAULT_DELAY_DAYS = 7
RECENT = 16  # records the exact-time features and the sequence read
RING_RECORDS = 2 * RECENT  # records kept: RECENT, and as many again so a redone batch sees what it saw
DAY_BUCKETS = 32  # days of (count, amount) of the records that left the ring; the longest window is 30
HISTORY_DAYS = 45
CHANNELS = ("POS", "ECOM", "ATM", "MOTO", "CONTACTLESS")
CUSTOMER_WINDOWS = (("1h", HOUR_MS), ("1d", DAY_MS), ("7d", 7 * DAY_MS), ("30d", 30 * DAY_MS))
EXACT_WINDOWS = 2  # the first ones: exact times over the last RECENT records; the rest: whole days, every record
TERMINAL_WINDOWS = (1, 7, 30)  # days

# `src` identifies the delivery (topic/partition/offset) an event came from, 0 offline:
# the same transaction id from the same record is a re-delivery, from another record a repeat.
HISTORY_DTYPE = np.dtype(
    [("tx", "<u8"), ("ts", "<i8"), ("amount", "<i8"), ("lat", "<f8"), ("lon", "<f8"), ("dev", "<u8"), ("src", "<u8")]
)

BUCKET_DTYPE = np.dtype([("day", "<i4"), ("n", "<i4"), ("sum", "<i8")])
CARD_DTYPE = np.dtype([("seq", "<u8"), ("ring", HISTORY_DTYPE, (RING_RECORDS,)), ("days", BUCKET_DTYPE, (DAY_BUCKETS,))])

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
IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}
SPANS = np.array([span for _, span in CUSTOMER_WINDOWS], dtype=np.int64)
CUST_N = np.array([IDX[f"cust_n_{w}"] for w, _ in CUSTOMER_WINDOWS])
CUST_MEAN = np.array([IDX[f"cust_mean_{w}"] for w, _ in CUSTOMER_WINDOWS])
CHANNEL = {c: i for i, c in enumerate(CHANNELS)}
CHANNEL_IDX = np.array([IDX[f"channel_{c.lower()}"] for c in CHANNELS])
TERM_IDX = np.array([IDX[f"term_{kind}_{d}d"] for d in TERMINAL_WINDOWS for kind in ("n", "risk")])

# Terminal state: a ring of RING_DAYS (day, transactions, frauds) int32 slots, slot = day % RING_DAYS.
RING_DAYS = 64
RING_DTYPE = np.dtype("<i4")
TX, FRAUD = 1, 2  # ring columns


def stable_hashes(texts: Iterable[str]) -> np.ndarray:
    """A 64-bit hash of each text that is the same in every process (unlike `hash`), as uint64:
    the 8-byte BLAKE2b digest of its UTF-8, little-endian. Stored in the cards' records, so
    it must never change."""
    digests = b"".join([hashlib.blake2b(t.encode(), digest_size=8).digest() for t in texts])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


EMPTY_HISTORY = np.zeros(0, dtype=HISTORY_DTYPE)  # a customer never seen
RECORD = np.dtype(f"V{HISTORY_DTYPE.itemsize}")


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


def rings_from_bytes(blobs: Sequence[bytes]) -> np.ndarray:
    """(T, RING_DAYS, 3) rings from their Redis strings (each as `ring_from_bytes` reads it), a new array."""
    size = RING_DAYS * 3 * RING_DTYPE.itemsize
    if any(len(b) % RING_DTYPE.itemsize for b in blobs):  # not whole slots: as `ring_from_bytes` refuses them
        return np.stack([ring_from_bytes(b) for b in blobs]) if blobs else np.zeros((0, RING_DAYS, 3), RING_DTYPE)
    joined = bytearray(b"".join(b[:size].ljust(size, b"\0") for b in blobs))
    return np.frombuffer(joined, dtype=RING_DTYPE).reshape(len(blobs), RING_DAYS, 3)


def ring_from_bytes(blob: bytes | None) -> np.ndarray:
    """A ring from its Redis string; the string may stop after its last written slot."""
    ring = empty_ring()
    if blob:
        flat = np.frombuffer(blob, dtype=RING_DTYPE)
        ring.reshape(-1)[: flat.size] = flat[: ring.size]
    return ring
