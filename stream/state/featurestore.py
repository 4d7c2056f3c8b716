"""The online feature store: entity state in Redis, features from `models/features.py`.

Key layout (golden-tested; `ns` keeps live and backtest state apart, the braces are
Redis Cluster hash tags):

    fs:{ns}:{c:<customer>}:fs2        string  the card's state (models.card), CARD_DTYPE, fixed size
    fs:{ns}:{t:<terminal>}            string  terminal ring: RING_DAYS x (day, tx, frauds) int32 LE
    fs:{ns}:{t:<terminal>}:labels     set     transaction ids whose fraud label counted
    fs:{ns}:{x:<transaction id>}      string  the record (source id) the id was first decided from

Per micro-batch: one atomic round trip (MULTI/EXEC) of a script call (CLAIM_BATCH) that
claims each transaction id for its record (SET NX GET on the id's ledger key: a second record
with an id already claimed by another — under any customer — is a repeat, dead-lettered by
the scorer and never decided twice; the same record delivered again keeps its claim) and an
MGET of every entity the batch touches, the pure feature computation, then one script call
(WRITE_BATCH, its arguments `stream.state.update`) that writes the new records and changed
day buckets into the cards and bumps the terminal counts, atomically — sent at once and
acknowledged once the scorer used the features (`Staged`, `stream.state.pending`). A
re-delivered batch (its ids already in the rings) gets the same features and counts nothing
twice. The card key carries the feature set version, so a build of another set never reads
it (fs1 histories become fs2 cards: `stream.state.migration`).

On a Redis Cluster (`redis.cluster`) the same round trips go through a cluster pipeline,
each node getting the commands for its slots: one command per key to read, one script call
per entity key to write. Each call is atomic for its key and a re-delivered batch is still
idempotent, but a batch whose write fails part-way (a primary failing over under it) keeps
the part written: its transactions are decided by the fallback chain, are not redelivered,
and their counts on the keys not written are missing, as on a single primary whose write fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import redis
from redis.cluster import RedisCluster

from models import kernels
from models.card import CARD_BYTES, CardTable
from models.features import BatchFeatures, FeatureEngine
from models.featureset import FEATURE_SET_VERSION, N_FEATURES, rings_from_bytes
from models.offline import OfflineFeatures
from models.sequence import N_SEQ, SEQ_LEN
from models.units import DAY_MS
from stream.errors import FeatureStoreError
from stream.state.connection import Client
from stream.state.pending import PendingScript
from stream.state.scripts import CLAIM_BATCH, COUNT_LABELS, WRITE_BATCH, claim_and_get, run
from stream.state.update import state_update

State = Mapping[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class Staged:
    """A batch's features, with its state write sent to Redis and not yet acknowledged: the
    scorer scores and encodes while Redis applies the write, then `acknowledge()`s it (exactly
    once; FeatureStoreError when the write failed, and then the features must not be used)."""

    features: BatchFeatures
    acknowledge: Callable[[], None]


def _done() -> None:
    """The acknowledgement of a write already acknowledged."""


def _split(customer_ids: Sequence[str], terminal_ids: Sequence[str], blobs: Sequence[bytes | None]) -> tuple[State, State]:
    """Cards and terminal rings from their bytes; a card of another size counts as never seen (the write script replaces it)."""
    nc = len(customer_ids)
    cards = [(c, b) for c, b in zip(customer_ids, blobs[:nc], strict=True) if b and len(b) == CARD_BYTES]
    read = [(t, b) for t, b in zip(terminal_ids, blobs[nc:], strict=True) if b]
    rings = rings_from_bytes([b for _, b in read])
    return CardTable([c for c, _ in cards], [b for _, b in cards]), {t: rings[j] for j, (t, _) in enumerate(read)}


class RedisFeatureStore:
    """Online backend of the feature definitions."""

    def __init__(self, client: Client, namespace: str, ttl_days: int, engine: FeatureEngine) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.ns = namespace
        self.ttl_ms = ttl_days * DAY_MS
        self.engine = engine
        self._claims = client.register_script(CLAIM_BATCH)
        self._write = client.register_script(WRITE_BATCH)
        self._labels = client.register_script(COUNT_LABELS)

    def customer_key(self, customer_id: str) -> str:
        return f"fs:{self.ns}:{{c:{customer_id}}}:{FEATURE_SET_VERSION}"

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
    ) -> tuple[np.ndarray, State, State]:
        """(claimed by another record, per event; customer and terminal state), one round trip."""
        claims = [(i, str(int(src))) for i, src in enumerate(sources or []) if src]
        keys = [self.customer_key(c) for c in customer_ids] + [self.terminal_key(t) for t in terminal_ids]
        ledger = [self.ledger_key(events[i]["transaction_id"]) for i, _ in claims]
        try:
            if self.cluster:  # keys of many slots: a cluster pipeline, one command per key
                pipe = self.client.pipeline(transaction=False)
                for key, (_, src) in zip(ledger, claims, strict=True):
                    pipe.set(key, src, nx=True, get=True, px=self.ttl_ms)
                for key in keys:
                    pipe.get(key)
                replies = pipe.execute()
            else:
                replies = claim_and_get(self.client, self._claims, ledger, [src for _, src in claims], keys, self.ttl_ms)
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"feature read failed: {exc}") from exc
        taken = np.zeros(len(events), dtype=bool)
        for (i, src), old in zip(claims, replies, strict=False):
            taken[i] = old is not None and (old.decode() if isinstance(old, bytes) else str(old)) != src
        blobs = cast(list[bytes | None], replies[len(claims) :])
        return taken, *_split(customer_ids, terminal_ids, blobs)

    def load(self, customer_ids: Sequence[str], terminal_ids: Sequence[str]) -> tuple[State, State]:
        """State of the given entities, one MGET."""
        keys = [self.customer_key(c) for c in customer_ids] + [self.terminal_key(t) for t in terminal_ids]
        try:
            read = self.client.mget_nonatomic if isinstance(self.client, RedisCluster) else self.client.mget
            blobs = cast(list[bytes | None], read(keys)) if keys else []
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"feature read failed: {exc}") from exc
        return _split(customer_ids, terminal_ids, blobs)

    def features(self, events: Sequence[Mapping[str, Any]], sources: Sequence[int] | None = None) -> BatchFeatures:
        """Features of a micro-batch (vectors and repeat flags); state updated idempotently.
        `sources` names each event's delivery (see `stage.admission.source_ids`): the same
        transaction id from another delivery is a repeat, whose row holds NaN and whose event
        leaves the state untouched."""
        staged = self.stage(events, sources)
        staged.acknowledge()
        return staged.features

    def stage(self, events: Sequence[Mapping[str, Any]], sources: Sequence[int] | None = None) -> Staged:
        """`features`, returning once the state write is sent rather than applied (on a single
        primary: a Redis Cluster's writes are acknowledged before this returns)."""
        cids = list(dict.fromkeys(e["customer_id"] for e in events))
        tids = list(dict.fromkeys(e["terminal_id"] for e in events))
        taken, customers, terminals = self._claim_and_load(events, sources, cids, tids)
        if taken.any():
            kept = np.flatnonzero(~taken)
            feats = np.full((len(events), N_FEATURES), np.nan, dtype=np.float32)
            seqs = np.zeros((len(events), SEQ_LEN, N_SEQ), dtype=np.float32)
            repeats = taken.copy()
            appended: dict[str, np.ndarray] = {}
            counts: dict[tuple[str, int], int] = {}
            if kept.size:
                rows = kept.tolist()
                inner = self.engine.transform(
                    [events[i] for i in rows], customers, terminals, None if sources is None else [sources[i] for i in rows]
                )
                feats[kept] = inner.features
                seqs[kept] = inner.sequences
                repeats[kept] = inner.repeats
                appended, counts = inner.appended, inner.terminal_counts
            result = BatchFeatures(feats, appended, counts, repeats, seqs)
        else:
            result = self.engine.transform(events, customers, terminals, sources)
        return Staged(result, self._write_state(result, customers))

    def _write_state(self, result: BatchFeatures, cards: Mapping[str, np.ndarray]) -> Callable[[], None]:
        """The batch's card changes and terminal counts, in one script call sent now and
        acknowledged by the callable returned (a cluster: one call per key, acknowledged here)."""
        customers = list(result.appended)
        by_terminal: dict[str, list[int]] = {}
        for (tid, day), count in result.terminal_counts.items():
            by_terminal.setdefault(tid, []).extend((day, count))
        if not (customers or by_terminal):
            return _done
        keys = [self.customer_key(c) for c in customers] + [self.terminal_key(t) for t in by_terminal]
        update = state_update(cards, result.appended, list(by_terminal.values()))
        if not self.cluster:
            return PendingScript(
                cast(redis.Redis, self.client), self._write, keys, update.args(self.ttl_ms), "feature update failed"
            ).wait
        calls = [([key], one.args(self.ttl_ms)) for key, one in zip(keys, update.per_key(), strict=True)]
        run(self.client, self._write, calls, "feature update failed")
        return _done

    def apply_labels(self, labels: Sequence[Mapping[str, Any]]) -> int:
        """Count fraud labels into terminal state, once per transaction id; returns labels sent."""
        pairs: list[tuple[list[str], list[Any]]] = []
        for lab in labels:
            if lab["is_fraud"]:
                key = self.terminal_key(lab["terminal_id"])
                pairs.append(([key, f"{key}:labels"], [lab["transaction_id"], int(lab["event_time"]) // DAY_MS]))
        if self.cluster:
            calls = [(keys, [self.ttl_ms, *args]) for keys, args in pairs]
        else:
            calls = [([k for keys, _ in pairs for k in keys], [self.ttl_ms, *(a for _, args in pairs for a in args)])]
        run(self.client, self._labels, calls if pairs else [], "label update failed")
        return len(pairs)

    def warm_up(self) -> None:
        """Compile the batch kernel, connect and load the scripts now rather than in the first batch."""
        kernels.warm_up()
        try:
            self._claims.sha = self.client.script_load(CLAIM_BATCH)
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
