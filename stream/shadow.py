"""Shadow mode: a candidate model scores live traffic into the shadow topic only.

It has its own consumer group, its own transactional id and its own feature-state
namespace, so it never changes a real decision nor the live Redis state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from confluent_kafka import Message

from models.artifacts import ModelBundle
from stream.codec import Codec
from stream.config import Topics
from stream.dlq import Record
from stream.featurestore import RedisFeatureStore
from stream.inline import score_both
from stream.policy import OUTCOME_NAMES, ROUTE_NAMES
from stream.runtime import DeviceRunner
from stream.scorer import decision_record


class ShadowScorer:
    def __init__(self, codec: Codec, store: RedisFeatureStore, bundle: ModelBundle, topics: Topics) -> None:
        self.codec = codec
        self.store = store
        self.bundle = bundle
        self.topics = topics
        self.runner = DeviceRunner(bundle.net, torch.device("cpu"), (64, 256, 1024), 1.0)

    def process(self, messages: Sequence[Message]) -> list[Record]:
        """Shadow decisions for the readable records; unreadable ones are the live scorer's to dead-letter."""
        batch = self.codec.decode_messages("Transaction", messages)
        if not batch.oks:
            return []
        events = [d.value for d in batch.oks]
        scored = score_both(self.bundle, self.runner, self.store.features(events).features)
        decided = int(time.time() * 1000)
        out: list[Record] = []
        for i, (ev, d) in enumerate(zip(events, batch.oks, strict=True)):
            deep = None if scored.deep_p[i] != scored.deep_p[i] else float(scored.deep_p[i])
            rec = decision_record(ev, OUTCOME_NAMES[scored.outcomes[i]], float(scored.score[i]), float(scored.xgb_p[i]), deep,
                                  ROUTE_NAMES[scored.routes[i]], [], "shadow", self.bundle.version, "shadow",
                                  d.source.timestamp_ms, decided)  # fmt: skip
            out.append((self.topics.shadow, ev["transaction_id"].encode(), self.codec.encode("Decision", rec), []))
        return out
