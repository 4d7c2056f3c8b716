"""Where stage 1's throughput goes, in the stages' own loop: the same records through the same
consume → process → produce cycle (one transaction per batch), adding one part of the work
at a time — Avro only, then the feature store, then XGBoost and routing (all of stage 1).
Each step runs in this process on its own topics and its own copy of the feature state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis
from confluent_kafka import Message

from bench.ceiling import run_loop
from models.decision import Outcome, Route
from models.features import FeatureEngine
from stream.config import Settings
from stream.kafka.codec import Codec, Decoded
from stream.kafka.loop import Process
from stream.records import BatchResult, Decision, Output, Transaction
from stream.stages.admission import source_ids
from stream.stages.guards import now_ms
from stream.stages.scorer import Scorer
from stream.state.featurestore import RedisFeatureStore
from stream.state.versions import ModelRegistry

STEPS = (
    ("avro", "Avro only: decode each transaction, encode a decision"),
    ("features", "+ feature store: one Redis read and one write per batch"),
    ("stage1", "+ XGBoost, routing, band to the buffer topic (all of stage 1)"),
)


def _decisions(codec: Codec, topic: str, decoded: Sequence[Decoded]) -> BatchResult:
    """A plain APPROVE per transaction, encoded as stage 1 encodes its decisions."""
    now = now_ms()
    out = []
    for d in decoded:
        tx = cast(Transaction, d.value)
        decision = Decision.of(tx, Outcome.APPROVE, Route.XGB_APPROVE, 0.0, xgb_score=0.0, reasons=[], source="xgb",
                               model_version="bench", arm="A", ingest_ms=d.source.timestamp_ms, decided_ms=now)  # fmt: skip
        out.append(Output(topic, tx["transaction_id"].encode(), codec.encode_decision(decision), []))
    return BatchResult(out)


def in_process_scorer(s: Settings, store: RedisFeatureStore) -> Scorer:
    """Stage 1's Scorer in this process, warmed up, with the deep stage counted as up (the band
    goes to the buffer topic): no metrics endpoint, no health thread."""
    models = ModelRegistry(s.model.dir, s.model.version, deep=False, threads=s.scorer.threads)
    scorer = Scorer(Codec(), store, models, s.kafka.topics, s.scorer, s.fallback, lambda: True)
    scorer.warm_up()
    return scorer


def step_process(step: str, s: Settings, store: RedisFeatureStore) -> Process:
    if step == "stage1":
        return in_process_scorer(s, store).process
    codec = Codec()

    def process(msgs: Sequence[Message]) -> BatchResult:
        oks = codec.decode_messages("Transaction", msgs).oks
        if step == "features":
            store.features([d.value for d in oks], source_ids(oks))
        return _decisions(codec, s.kafka.topics.decisions, oks)

    return process


def run_step(step: str, s: Settings, n: int, group: str) -> tuple[int, float]:
    """One step over the n records pre-filled in s's transactions topic."""
    client = redis.Redis.from_url(s.redis.url)
    store = RedisFeatureStore(client, s.redis.namespace, s.redis.ttl_days, FeatureEngine())
    store.warm_up()
    try:
        return run_loop(s.kafka, s.kafka.topics.transactions, group, s.scorer.batch, step_process(step, s, store), n)
    finally:
        client.close()


def table_rows(out: dict[str, Any]) -> list[tuple[str, str]]:
    """Table rows of the steps, as throughput and share of the ceiling."""
    ceiling, steps = out["ceiling"]["per_s"], out.get("staircase", {})
    rates = [(label, steps[step]["per_s"]) for step, label in STEPS if step in steps]
    return [(f"  {label}", f"{rate:,.0f} tx/s ({rate / ceiling:.0%} of ceiling)") for label, rate in rates]
