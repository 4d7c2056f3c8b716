"""Stage 2: the deep worker. Micro-batches the buffer topic through the hybrid
model of the version stage 1 used for each record, and publishes decisions.

Every decodable buffer record gets a decision: records whose version cannot be used
(missing, corrupt, not a version name, inconsistent leaves) are decided as
XGB_FALLBACK from the XGBoost score stage 1 carried, as stage 1 does while the deep
stage is down — REVIEW at or above the fallback cut-off, and REVIEW for all of them
when no loadable version can tell the cut-off. Never dead-lettered, never approved
by omission."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import structlog
import torch
from confluent_kafka import Message

from models.features import FEATURE_NAMES
from stream.codec import Codec, Decoded
from stream.config import DeepSettings, Topics
from stream.dlq import Record, dlq_record
from stream.errors import ArtifactError, ValidationError
from stream.metrics import Metrics
from stream.policy import OUTCOME_NAMES, Outcome, Route, deep_outcomes, top_reasons
from stream.registry import ModelRegistry
from stream.runtime import DeviceRunner, pick_device
from stream.scorer import decision_record

log = structlog.get_logger("fraudstream.deep")


class DeepWorker:
    """The per-batch work of stage 2; the Kafka loop lives in `stream.stage`."""

    def __init__(
        self, codec: Codec, models: ModelRegistry, topics: Topics, settings: DeepSettings, metrics: Metrics | None = None
    ) -> None:
        self.codec = codec
        self.metrics = metrics
        self.decided: list[tuple[str, str, float]] = []
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

    def process(self, messages: Sequence[Message]) -> list[Record]:
        """Outputs of one batch: decisions and DLQ records."""
        self.models.refresh()
        self.decided = []
        batch = self.codec.decode_messages("ScoredTransaction", messages)
        out: list[Record] = [dlq_record(self.topics.dlq, f, "deep") for f in batch.errs]
        by_version: dict[str, list[Decoded]] = {}
        for d in batch.oks:
            by_version.setdefault(d.value["model_version"], []).append(d)
        for version, group in by_version.items():
            try:
                out.extend(self.decide(version, group))
            except (ValidationError, ArtifactError) as exc:
                # This version cannot decide the group: the carried XGBoost score does.
                log.error("deep_version_unusable", version=version[:80], records=len(group), error=str(exc))
                out.extend(self.fall_back(group))
        if self.metrics is not None:
            self.metrics.count_decisions(self.decided)
            usable = self.models.usable
            if usable is not None:
                self.metrics.set_model(usable.version)
        return out

    def fall_back(self, group: Sequence[Decoded]) -> list[Record]:
        """XGB_FALLBACK decisions from the carried XGBoost scores (see the module docstring)."""
        usable = self.models.usable
        cut = usable.thresholds.fallback_review_above if usable is not None else None
        decided = int(time.time() * 1000)
        out: list[Record] = []
        for d in group:
            v = d.value
            tx, p = v["transaction"], float(v["xgb_score"])
            outcome = Outcome.REVIEW if cut is None or p >= cut else Outcome.APPROVE
            rec = decision_record(
                tx, OUTCOME_NAMES[outcome], p, p, None, Route.XGB_FALLBACK.name, [("xgb_score", p, 1.0)], "xgb",
                str(v["model_version"])[:64], v["arm"], int(v["ingest_time"]), decided,
            )  # fmt: skip
            self.decided.append((rec["route"], rec["decision"], rec["latency_ms"]))
            out.append((self.topics.decisions, tx["transaction_id"].encode(), self.codec.encode("Decision", rec), []))
        return out

    def decide(self, version: str, group: Sequence[Decoded]) -> list[Record]:
        bundle = self.models.get(version)
        runner = self.runner(version)
        x = np.array([d.value["features"] for d in group], dtype=np.float32)
        margin = np.array([d.value["xgb_margin"] for d in group], dtype=np.float32)
        leaves = np.array([d.value["leaf_indices"] for d in group], dtype=np.int32)
        if leaves.ndim != 2:
            raise ValidationError("leaf index lists differ in length within the batch")
        p = runner.scores(x, margin, leaves)
        th = bundle.thresholds
        outcomes = deep_outcomes(p, np.full(len(p), th.review_above), np.full(len(p), th.deep_block_above))
        flagged = np.flatnonzero(outcomes != Outcome.APPROVE)
        reasons: dict[int, list[tuple[str, float, float]]] = {}
        if flagged.size:
            gxi = runner.gradient_x_input(x[flagged], margin[flagged], leaves[flagged])
            reasons = dict(zip(flagged.tolist(), top_reasons(gxi, x[flagged], FEATURE_NAMES), strict=True))
        decided = int(time.time() * 1000)
        out: list[Record] = []
        for i, d in enumerate(group):
            v = d.value
            tx = v["transaction"]
            rec = decision_record(
                tx, OUTCOME_NAMES[outcomes[i]], float(p[i]), float(v["xgb_score"]), float(p[i]), Route.DEEP.name,
                reasons.get(i, []), "deep", version, v["arm"], int(v["ingest_time"]), decided,
            )  # fmt: skip
            self.decided.append((rec["route"], rec["decision"], rec["latency_ms"]))
            out.append((self.topics.decisions, tx["transaction_id"].encode(), self.codec.encode("Decision", rec), []))
        return out
