"""The online feature store: entity state in Redis, features from `models/features.py`.

Key layout (golden-tested; `ns` keeps live and backtest state apart, the braces are
Redis Cluster hash tags):

    fs:{ns}:{c:<customer>}            string  customer history: HISTORY_DTYPE records, appended
    fs:{ns}:{t:<terminal>}            string  terminal ring: RING_DAYS x (day, tx, frauds) int32 LE
    fs:{ns}:{t:<terminal>}:labels     set     transaction ids whose fraud label counted
    fs:{ns}:{x:<transaction id>}      string  the record (source id) the id was first decided from

Per micro-batch: one round trip that claims each transaction id for its record
(SET NX GET on the id's ledger key: a second record with an id already claimed by
another — under any customer — is a repeat, dead-lettered by the scorer and never
decided twice; the same record delivered again keeps its claim) and reads every
entity the batch touches (MGET), the pure feature
computation, then one script call that appends the new history records and bumps
the terminal counts — atomically, so a re-delivered batch (its ids already in the
histories) gets the same features and counts nothing twice. Histories are appended
and cut back to their last MAX_HISTORY records once they pass twice that, so a
write moves the new records only.

The batch script touches many keys at once: the store runs against one Redis
primary (replicas for failover), not a sharded Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import redis

from models.features import BatchFeatures, FeatureEngine, OfflineFeatures
from models.featureset import HISTORY_DTYPE, MAX_HISTORY, N_FEATURES, RING_DAYS, ring_from_bytes
from models.units import DAY_MS
from stream.errors import FeatureStoreError

# Shared by both scripts: add ARGV-given count to a ring slot (column 2 = tx, 3 = frauds),
# mirroring models.features.ring_add: a slot holding an older day is reset first, one
# holding a later day means the day is too old to be read again.
_BUMP = f"""
local function bump(key, day, col, count)
  local off = (day % {RING_DAYS}) * 12
  local raw = redis.call('GETRANGE', key, off, off + 11)
  local d, n, f = 0, 0, 0
  if #raw == 12 then d, n, f = struct.unpack('<i4i4i4', raw) end
  if d ~= day then
    if d > day then return end
    n, f = 0, 0
  end
  if col == 2 then n = n + count else f = f + count end
  redis.call('SETRANGE', key, off, struct.pack('<i4i4i4', day, n, f))
end
"""

# KEYS: customer keys, then terminal keys. ARGV: #customers, ttl ms, bytes kept, bytes
# that trigger a cut, one blob per customer, then per terminal: #days, (day, count)...
WRITE_BATCH = (
    _BUMP
    + """
local nc, ttl, keep, cap = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local a = 5
for i = 1, nc do
  local len = redis.call('APPEND', KEYS[i], ARGV[a])
  a = a + 1
  if len > cap then redis.call('SET', KEYS[i], redis.call('GETRANGE', KEYS[i], len - keep, len - 1)) end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
for i = nc + 1, #KEYS do
  local days = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, days do
    bump(KEYS[i], tonumber(ARGV[a]), 2, tonumber(ARGV[a + 1]))
    a = a + 2
  end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
"""
)

# KEYS: (terminal key, its labels set) pairs. ARGV: ttl ms, then (transaction id, day) per pair.
COUNT_LABELS = (
    _BUMP
    + """
local counted = 0
for j = 1, #KEYS / 2 do
  local ring, seen = KEYS[2 * j - 1], KEYS[2 * j]
  if redis.call('SADD', seen, ARGV[2 * j]) == 1 then
    bump(ring, tonumber(ARGV[2 * j + 1]), 3, 1)
    counted = counted + 1
  end
  redis.call('PEXPIRE', ring, ARGV[1])
  redis.call('PEXPIRE', seen, ARGV[1])
end
return counted
"""
)
_RECORD_BYTES = HISTORY_DTYPE.itemsize


class RedisFeatureStore:
    """Online backend of the feature definitions."""

    def __init__(self, client: redis.Redis, namespace: str, ttl_days: int, engine: FeatureEngine) -> None:
        self.client = client
        self.ns = namespace
        self.ttl_ms = ttl_days * DAY_MS
        self.engine = engine
        self._write = client.register_script(WRITE_BATCH)
        self._labels = client.register_script(COUNT_LABELS)

    def customer_key(self, customer_id: str) -> str:
        return f"fs:{self.ns}:{{c:{customer_id}}}"

    def terminal_key(self, terminal_id: str) -> str:
        return f"fs:{self.ns}:{{t:{terminal_id}}}"

    def ledger_key(self, transaction_id: str) -> str:
        return f"fs:{self.ns}:{{x:{transaction_id}}}"

    def _claim_and_load(
        self,
        events: Sequence[Mapping[str, Any]],
        sources: Sequence[int] | None,
        customer_ids: Sequence[str],
        terminal_ids: Sequence[str],
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(claimed by another record, per event; customer and terminal state), one round trip."""
        claims = [(i, str(int(src))) for i, src in enumerate(sources or []) if src]
        keys = [self.customer_key(c) for c in customer_ids] + [self.terminal_key(t) for t in terminal_ids]
        try:
            pipe = self.client.pipeline(transaction=False)
            for i, src in claims:
                pipe.set(self.ledger_key(events[i]["transaction_id"]), src, nx=True, get=True, px=self.ttl_ms)
            if keys:
                pipe.mget(keys)
            replies = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"feature read failed: {exc}") from exc
        taken = np.zeros(len(events), dtype=bool)
        for (i, src), old in zip(claims, replies, strict=False):
            taken[i] = old is not None and (old.decode() if isinstance(old, bytes) else str(old)) != src
        blobs = cast(list[bytes | None], replies[len(claims)]) if keys else []
        nc = len(customer_ids)
        customers = {c: np.frombuffer(b, dtype=HISTORY_DTYPE) for c, b in zip(customer_ids, blobs[:nc], strict=True) if b}
        terminals = {t: ring_from_bytes(b) for t, b in zip(terminal_ids, blobs[nc:], strict=True) if b}
        return taken, customers, terminals

    def load(
        self, customer_ids: Sequence[str], terminal_ids: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """State of the given entities, one MGET."""
        keys = [self.customer_key(c) for c in customer_ids] + [self.terminal_key(t) for t in terminal_ids]
        try:
            blobs = cast(list[bytes | None], self.client.mget(keys)) if keys else []
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"feature read failed: {exc}") from exc
        nc = len(customer_ids)
        customers = {c: np.frombuffer(b, dtype=HISTORY_DTYPE) for c, b in zip(customer_ids, blobs[:nc], strict=True) if b}
        terminals = {t: ring_from_bytes(b) for t, b in zip(terminal_ids, blobs[nc:], strict=True) if b}
        return customers, terminals

    def features(self, events: Sequence[Mapping[str, Any]], sources: Sequence[int] | None = None) -> BatchFeatures:
        """Features of a micro-batch (vectors and repeat flags); state updated idempotently.
        `sources` names each event's delivery (see `stage.admission.source_ids`): the same
        transaction id from another delivery is a repeat, whose row holds NaN and whose event
        leaves the state untouched."""
        cids = list(dict.fromkeys(e["customer_id"] for e in events))
        tids = list(dict.fromkeys(e["terminal_id"] for e in events))
        taken, customers, terminals = self._claim_and_load(events, sources, cids, tids)
        if taken.any():
            kept = np.flatnonzero(~taken)
            feats = np.full((len(events), N_FEATURES), np.nan, dtype=np.float32)
            repeats = taken.copy()
            appended: dict[str, np.ndarray] = {}
            counts: dict[tuple[str, int], int] = {}
            if kept.size:
                rows = kept.tolist()
                inner = self.engine.transform(
                    [events[i] for i in rows], customers, terminals, None if sources is None else [sources[i] for i in rows]
                )
                feats[kept] = inner.features
                repeats[kept] = inner.repeats
                appended, counts = inner.appended, inner.terminal_counts
            result = BatchFeatures(feats, appended, counts, repeats)
        else:
            result = self.engine.transform(events, customers, terminals, sources)
        by_terminal: dict[str, list[int]] = {}
        for (tid, day), count in result.terminal_counts.items():
            by_terminal.setdefault(tid, []).extend((day, count))
        keys = [self.customer_key(c) for c in result.appended] + [self.terminal_key(t) for t in by_terminal]
        args: list[Any] = [len(result.appended), self.ttl_ms, MAX_HISTORY * _RECORD_BYTES, 2 * MAX_HISTORY * _RECORD_BYTES]
        args += [records.tobytes() for records in result.appended.values()]
        for pairs in by_terminal.values():
            args.append(len(pairs) // 2)
            args += pairs
        if keys:
            try:
                self._write(keys=keys, args=args)
            except (redis.RedisError, OSError) as exc:
                raise FeatureStoreError(f"feature update failed: {exc}") from exc
        return result

    def apply_labels(self, labels: Sequence[Mapping[str, Any]]) -> int:
        """Count fraud labels into terminal state, once per transaction id; returns labels sent."""
        keys: list[str] = []
        args: list[Any] = [self.ttl_ms]
        for lab in labels:
            if lab["is_fraud"]:
                key = self.terminal_key(lab["terminal_id"])
                keys += [key, f"{key}:labels"]
                args += [lab["transaction_id"], int(lab["event_time"]) // DAY_MS]
        if keys:
            try:
                self._labels(keys=keys, args=args)
            except (redis.RedisError, OSError) as exc:
                raise FeatureStoreError(f"label update failed: {exc}") from exc
        return len(keys) // 2

    def warm_up(self) -> None:
        """Connect and load the scripts now rather than inside the first batch."""
        try:
            self._write.sha = self.client.script_load(WRITE_BATCH)
            self._labels.sha = self.client.script_load(COUNT_LABELS)
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"redis unavailable: {exc}") from exc

    def heartbeat(self, name: str, ttl_s: float) -> None:
        """Announce that a `name` service is alive for the next ttl_s seconds."""
        self.client.set(f"hb:{self.ns}:{name}", "1", px=int(ttl_s * 1000))

    def alive(self, name: str) -> bool:
        """Has any `name` service announced itself within its ttl?"""
        return bool(self.client.exists(f"hb:{self.ns}:{name}"))

    def backfill(self, offline: OfflineFeatures) -> None:
        """Write the state an offline run built (warm start for a demo or a backtest)."""
        pipe = self.client.pipeline(transaction=False)
        items = [(self.customer_key(c), h.tobytes()) for c, h in offline.customers.items()]
        items += [(self.terminal_key(t), ring.tobytes()) for t, ring in offline.terminals.items()]
        for i, (key, blob) in enumerate(items):
            pipe.set(key, blob, px=self.ttl_ms)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
