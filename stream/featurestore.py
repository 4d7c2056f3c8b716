"""The online feature store: entity state in Redis, features from `models/features.py`.

Key layout (golden-tested; `ns` keeps live and backtest state apart, the hash tag
in braces keeps keys one script touches together in one Redis Cluster slot):

    fs:{ns}:{c:<customer>}               string  customer history (HISTORY_DTYPE bytes)
    fs:{ns}:{t:<terminal>}               hash    n:<day> transactions, f:<day> frauds
    fs:{ns}:{t:<terminal>}:seen:<day>    set     transaction ids already counted that day
    fs:{ns}:{t:<terminal>}:labels        set     transaction ids whose fraud label counted

Per micro-batch: one pipelined read of every entity the batch touches, the pure
feature computation, one MULTI/EXEC write of the new state. Terminal counts go
through a script that counts a transaction id once, and a customer's history
holds the ids it has seen, so a re-delivered batch gets the same features and
counts nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import redis

from models.features import DAY_MS, HISTORY_DTYPE, BatchFeatures, FeatureEngine, OfflineFeatures, TerminalState
from stream.errors import FeatureStoreError

# Increment a counter field once per member: KEYS[1] hash, KEYS[2] seen set;
# ARGV: member, field, hash ttl (s), seen ttl (s), stale field to drop.
COUNT_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
end
if ARGV[5] ~= '' then redis.call('HDEL', KEYS[1], 'n:' .. ARGV[5], 'f:' .. ARGV[5]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""
SEEN_TTL_S = 3 * 86_400  # re-deliveries happen within minutes; three days is ample


class RedisFeatureStore:
    """Online backend of the feature definitions."""

    def __init__(self, client: redis.Redis, namespace: str, ttl_days: int, engine: FeatureEngine) -> None:
        self.client = client
        self.ns = namespace
        self.ttl_s = ttl_days * 86_400
        self.engine = engine
        self._count_once = client.register_script(COUNT_ONCE)

    def customer_key(self, customer_id: str) -> str:
        return f"fs:{self.ns}:{{c:{customer_id}}}"

    def terminal_key(self, terminal_id: str) -> str:
        return f"fs:{self.ns}:{{t:{terminal_id}}}"

    def _stale_day(self, day: int) -> str:
        # Fields older than the widest window plus the delay are never read again.
        return str(day - self.ttl_s // 86_400 - 1)

    def load(
        self, customer_ids: Sequence[str], terminal_ids: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, TerminalState]]:
        """State of the given entities, one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for cid in customer_ids:
            pipe.get(self.customer_key(cid))
        for tid in terminal_ids:
            pipe.hgetall(self.terminal_key(tid))
        try:
            replies = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"feature read failed: {exc}") from exc
        customers = {
            cid: np.frombuffer(blob, dtype=HISTORY_DTYPE).copy()
            for cid, blob in zip(customer_ids, replies[: len(customer_ids)], strict=True)
            if blob
        }
        terminals = {tid: _terminal_state(h) for tid, h in zip(terminal_ids, replies[len(customer_ids) :], strict=True)}
        return customers, terminals

    def features(self, events: Sequence[Mapping[str, Any]]) -> BatchFeatures:
        """Features of a micro-batch (vectors and repeat flags); state updated idempotently."""
        cids = list(dict.fromkeys(e["customer_id"] for e in events))
        tids = list(dict.fromkeys(e["terminal_id"] for e in events))
        customers, terminals = self.load(cids, tids)
        result = self.engine.transform(events, customers, terminals)
        pipe = self.client.pipeline(transaction=True)
        for cid, hist in result.customers.items():
            pipe.set(self.customer_key(cid), hist.tobytes(), ex=self.ttl_s)
        for tid, day, txid in result.terminal_tx:
            key = self.terminal_key(tid)
            self._count_once(
                keys=[key, f"{key}:seen:{day}"],
                args=[txid, f"n:{day}", self.ttl_s, SEEN_TTL_S, self._stale_day(day)],
                client=pipe,
            )
        try:
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"feature update failed: {exc}") from exc
        return result

    def apply_labels(self, labels: Sequence[Mapping[str, Any]]) -> int:
        """Count fraud labels into terminal state, once per transaction id; returns labels sent."""
        pipe = self.client.pipeline(transaction=True)
        n = 0
        for lab in labels:
            if not lab["is_fraud"]:
                continue
            key = self.terminal_key(lab["terminal_id"])
            day = int(lab["event_time"]) // DAY_MS
            self._count_once(
                keys=[key, f"{key}:labels"],
                args=[lab["transaction_id"], f"f:{day}", self.ttl_s, self.ttl_s, ""],
                client=pipe,
            )
            n += 1
        if n:
            try:
                pipe.execute()
            except (redis.RedisError, OSError) as exc:
                raise FeatureStoreError(f"label update failed: {exc}") from exc
        return n

    def warm_up(self) -> None:
        """Connect and load the counting script now rather than inside the first batch."""
        try:
            self._count_once.sha = self.client.script_load(COUNT_ONCE)
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
        for i, (cid, hist) in enumerate(offline.customers.items()):
            pipe.set(self.customer_key(cid), hist.tobytes(), ex=self.ttl_s)
            if i % 1000 == 999:
                pipe.execute()
        for tid, state in offline.terminals.items():
            fields = {f"n:{d}": v for d, v in state.tx.items()} | {f"f:{d}": v for d, v in state.fraud.items()}
            if fields:
                pipe.hset(self.terminal_key(tid), mapping=fields)  # type: ignore[arg-type]
                pipe.expire(self.terminal_key(tid), self.ttl_s)
        pipe.execute()


def _terminal_state(h: Mapping[bytes, bytes]) -> TerminalState:
    state = TerminalState()
    for k, v in h.items():
        kind, _, day = k.decode().partition(":")
        (state.tx if kind == "n" else state.fraud)[int(day)] = int(v)
    return state
