"""Shadow mode: a candidate model decides what live decided, into the shadow topic only.

The shadow stage consumes the decisions topic (read_committed: only what live
published), takes the feature vector each decision carries — exactly what live scored —
and runs both of the candidate's stages on it. A shadow decision therefore differs
from live only where the models differ: no state of its own to warm up, no labels to
miss, nothing written to Redis, no real decision changed.

A live decision without features (the rules or the safe default decided it while Redis
was down) is not shadowed: there is nothing a model could score; the count of such
decisions is logged per batch. A candidate whose label delay differs from the live
version's would see features computed for another delay: backtest it with
`--features rebuilt` instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import cast

import numpy as np
import structlog
import torch
from confluent_kafka import Message

from models.artifacts import ModelBundle
from models.decision import Outcome, Route
from stream.config import Topics
from stream.kafka.codec import Codec
from stream.records import BatchResult, Decision, Output, Transaction
from stream.stages.inline import score_both
from stream.stages.runtime import DeviceRunner

log = structlog.get_logger()


class ShadowScorer:
    def __init__(self, codec: Codec, bundle: ModelBundle, topics: Topics, pad_sizes: tuple[int, ...]) -> None:
        self.codec = codec
        self.bundle = bundle
        self.topics = topics
        self.runner = DeviceRunner(bundle.net, torch.device("cpu"), pad_sizes, 1.0)

    def process(self, messages: Sequence[Message]) -> BatchResult:
        """Shadow decisions for the live decisions that carry features."""
        batch = self.codec.decode_messages("Decision", messages)
        live = [Decision.from_avro(d.value) for d in batch.oks]
        usable = [d for d in live if d.carries_state()]
        if len(usable) < len(live) or batch.errs:
            log.info("shadow_skipped", without_features=len(live) - len(usable), unreadable=len(batch.errs))
        if not usable:
            return BatchResult([])
        x = np.array([d.features for d in usable], dtype=np.float32)
        scored = score_both(self.bundle, self.runner, x, np.array([d.sequence for d in usable], dtype=np.float32))
        decided = int(time.time() * 1000)
        out: list[Output] = []
        for i, d in enumerate(usable):
            deep = None if math.isnan(scored.deep_p[i]) else float(scored.deep_p[i])
            tx = cast(Transaction, {"transaction_id": d.transaction_id, "customer_id": d.customer_id, "event_time": d.event_time})
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
                ingest_ms=d.decided_at - int(d.latency_ms),
                decided_ms=decided,
                features=d.features,
                feature_set_version=d.feature_set_version,
                sequence=d.sequence,
                sequence_version=d.sequence_version,
            )
            out.append(Output(self.topics.shadow, d.transaction_id.encode(), self.codec.encode_decision(rec), []))
        return BatchResult(out)
