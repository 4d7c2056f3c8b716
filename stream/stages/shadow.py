"""Shadow mode: a candidate model scores live traffic into the shadow topic only.

It has its own consumer group, its own transactional id and its own feature-state
namespace, so it never changes a real decision nor the live Redis state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import cast

import torch
from confluent_kafka import Message

from models.artifacts import ModelBundle
from models.decision import Outcome, Route
from stream.config import Topics
from stream.kafka.codec import Codec
from stream.records import BatchResult, Decision, Output, Transaction
from stream.stages.inline import score_both
from stream.stages.runtime import DeviceRunner
from stream.state.featurestore import RedisFeatureStore


class ShadowScorer:
    def __init__(
        self, codec: Codec, store: RedisFeatureStore, bundle: ModelBundle, topics: Topics, pad_sizes: tuple[int, ...]
    ) -> None:
        self.codec = codec
        self.store = store
        self.bundle = bundle
        self.topics = topics
        self.runner = DeviceRunner(bundle.net, torch.device("cpu"), pad_sizes, 1.0)

    def process(self, messages: Sequence[Message]) -> BatchResult:
        """Shadow decisions for the readable records; unreadable ones are the live scorer's to dead-letter."""
        batch = self.codec.decode_messages("Transaction", messages)
        if not batch.oks:
            return BatchResult([])
        events = [cast(Transaction, d.value) for d in batch.oks]
        scored = score_both(self.bundle, self.runner, self.store.features(events).features)
        decided = int(time.time() * 1000)
        out: list[Output] = []
        for i, (tx, d) in enumerate(zip(events, batch.oks, strict=True)):
            deep = None if math.isnan(scored.deep_p[i]) else float(scored.deep_p[i])
            rec = Decision.of(
                tx,
                Outcome(int(scored.outcomes[i])),
                Route(int(scored.routes[i])),
                float(scored.score[i]),
                xgb_score=float(scored.xgb_p[i]),
                deep_score=deep,
                reasons=[],
                source="shadow",
                model_version=self.bundle.version,
                arm="shadow",
                ingest_ms=d.source.timestamp_ms,
                decided_ms=decided,
            )
            out.append(Output(self.topics.shadow, tx["transaction_id"].encode(), self.codec.encode_decision(rec), []))
        return BatchResult(out)
