"""Stage 2: the deep worker. Micro-batches the buffer topic through the hybrid
model of the version stage 1 used for each record, and publishes decisions.

Every decodable buffer record gets a decision: records whose version cannot be used
(missing, corrupt, not a version name, inconsistent leaves) are decided as
XGB_FALLBACK from the XGBoost score stage 1 carried, as stage 1 does while the deep
stage is down (`models.decision.fallback_outcomes`) — REVIEW at or above the fallback
cut-off, and REVIEW for all of them when no loadable version can tell the cut-off.
Never dead-lettered, never approved by omission."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import structlog
import torch
from confluent_kafka import Message

from models.decision import Outcome, Route, deep_outcomes, fallback_outcomes, top_reasons
from models.featureset import FEATURE_NAMES
from stream.config import DeepSettings, Topics
from stream.deadletter import dead_letter
from stream.errors import ArtifactError, ValidationError
from stream.kafka.codec import Codec
from stream.records import BatchResult, BufferRecord, Decided, Decision, Output
from stream.stages.runtime import DeviceRunner, pick_device
from stream.state.versions import Versions

log = structlog.get_logger("fraudstream.deep")


class DeepWorker:
    """The per-batch work of stage 2; the Kafka loop lives in `stream.kafka.loop`."""

    def __init__(self, codec: Codec, models: Versions, topics: Topics, settings: DeepSettings) -> None:
        self.codec = codec
        self.models = models
        self.topics = topics
        self.settings = settings
        self.device: torch.device = pick_device(settings.device)
        if self.device.type == "cpu":
            torch.set_num_threads(settings.cpu_threads)
        self._runners: dict[str, DeviceRunner] = {}
        usable = models.usable
        if usable is not None:
            self.runner(usable.version).warm_up()
        else:
            log.warning("deep_worker_degraded_at_start", reason=models.broken)

    def runner(self, version: str) -> DeviceRunner:
        r = self._runners.get(version)
        if r is None:
            net = self.models.get(version).net
            s = self.settings
            r = DeviceRunner(net, self.device, s.pad_sizes, s.gpu_memory_fraction, fp16=s.fp16, compile=s.compile)
            self._runners[version] = r
        return r

    def process(self, messages: Sequence[Message]) -> BatchResult:
        """Decisions (and dead letters for unreadable records) of one batch."""
        self.models.refresh()
        records, failures = self.codec.decode_buffer(messages)
        outputs = [dead_letter(self.topics.dlq, f, "deep") for f in failures]
        by_version: dict[str, list[BufferRecord]] = {}
        for rec, _source in records:
            by_version.setdefault(rec.model_version, []).append(rec)
        decisions: list[Decision] = []
        for version, group in by_version.items():
            try:
                decisions += self.decide(version, group)
            except (ValidationError, ArtifactError) as exc:
                # This version cannot decide the group: the carried XGBoost score does.
                log.error("deep_version_unusable", version=version[:80], records=len(group), error=str(exc))
                decisions += self.fall_back(group)
        for d in decisions:
            outputs.append(Output(self.topics.decisions, d.transaction_id.encode(), self.codec.encode_decision(d), []))
        usable = self.models.usable
        decided = tuple(Decided(d.route.name, d.outcome.name, d.latency_ms) for d in decisions)
        return BatchResult(outputs, decided, model_version=usable.version if usable is not None else None)

    def fall_back(self, group: Sequence[BufferRecord]) -> list[Decision]:
        """XGB_FALLBACK decisions from the carried XGBoost scores (see the module docstring)."""
        usable = self.models.usable
        p = np.array([r.xgb_score for r in group], dtype=np.float32)
        outcomes = fallback_outcomes(p, usable.thresholds.fallback_review_above if usable is not None else None)
        decided = int(time.time() * 1000)
        return [
            Decision.of(
                r.transaction,
                Outcome(int(o)),
                Route.XGB_FALLBACK,
                r.xgb_score,
                xgb_score=r.xgb_score,
                reasons=[("xgb_score", r.xgb_score, 1.0)],
                source="xgb",
                model_version=r.model_version[:64],
                arm=r.arm,
                ingest_ms=r.ingest_time,
                decided_ms=decided,
                features=r.features,
                feature_set_version=r.feature_set_version,
                sequence=r.sequence,
                sequence_version=r.sequence_version,
            )
            for r, o in zip(group, outcomes.tolist(), strict=True)
        ]

    def decide(self, version: str, group: Sequence[BufferRecord]) -> list[Decision]:
        bundle = self.models.get(version)
        runner = self.runner(version)
        x = np.array([r.features for r in group], dtype=np.float32)
        margin = np.array([r.xgb_margin for r in group], dtype=np.float32)
        leaves = np.array([r.leaf_indices for r in group], dtype=np.int32)
        if leaves.ndim != 2:
            raise ValidationError("leaf index lists differ in length within the batch")
        if len({len(r.sequence) for r in group}) > 1:
            raise ValidationError("card sequences differ in length within the batch")
        seq = np.array([r.sequence for r in group], dtype=np.float32)
        p = runner.scores(x, margin, leaves, seq)
        outcomes = deep_outcomes(p, bundle.thresholds)
        flagged = np.flatnonzero(outcomes != Outcome.APPROVE)
        reasons: dict[int, list[tuple[str, float, float]]] = {}
        if flagged.size:
            gxi = runner.gradient_x_input(x[flagged], margin[flagged], leaves[flagged], seq[flagged])
            reasons = dict(zip(flagged.tolist(), top_reasons(gxi, x[flagged], FEATURE_NAMES), strict=True))
        decided = int(time.time() * 1000)
        return [
            Decision.of(
                r.transaction,
                Outcome(int(outcomes[i])),
                Route.DEEP,
                float(p[i]),
                xgb_score=r.xgb_score,
                deep_score=float(p[i]),
                reasons=reasons.get(i, []),
                source="deep",
                model_version=version,
                arm=r.arm,
                ingest_ms=r.ingest_time,
                decided_ms=decided,
                features=r.features,
                feature_set_version=r.feature_set_version,
                sequence=r.sequence,
                sequence_version=r.sequence_version,
            )
            for i, r in enumerate(group)
        ]
