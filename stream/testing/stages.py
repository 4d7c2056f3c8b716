"""What a stage needs besides Kafka, in memory: a feature store, a set of model versions,
and a tiny model bundle trained on the spot (XGBoost, and the hybrid net for stage 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from models.artifacts import ModelBundle
from models.decision import Thresholds
from models.errors import ArtifactError
from models.features import BatchFeatures, FeatureEngine
from models.featureset import N_FEATURES
from models.offline import OfflineFeatures
from models.sequence import N_SEQ, SEQ_LEN
from models.xgb import Forest
from stream.errors import FeatureStoreError
from stream.state.featurestore import Staged


class MemoryFeatureStore:
    """`RedisFeatureStore`'s contract over `OfflineFeatures`: the same vectors, idempotent per
    delivery, a transaction id claimed by another delivery reported as a repeat; `down = True`
    makes every call fail as an unreachable Redis does, `write_fails = True` only the state
    writes' acknowledgements."""

    def __init__(self, engine: FeatureEngine | None = None) -> None:
        self.offline = OfflineFeatures(engine or FeatureEngine())
        self.claims: dict[str, int] = {}
        self.down = False
        self.write_fails = False
        self.calls = 0
        self.acknowledged = 0

    def features(self, events: Sequence[Mapping[str, Any]], sources: Sequence[int] | None = None) -> BatchFeatures:
        staged = self.stage(events, sources)
        staged.acknowledge()
        return staged.features

    def stage(self, events: Sequence[Mapping[str, Any]], sources: Sequence[int] | None = None) -> Staged:
        """The features; the write acknowledged later fails when `write_fails` is set (Redis lost
        between the read and the write's reply)."""
        self.calls += 1
        if self.down:
            raise FeatureStoreError("feature read failed: in-memory store marked down")
        repeats = np.zeros(len(events), dtype=bool)
        for i, (e, src) in enumerate(zip(events, sources or [0] * len(events), strict=True)):
            if src:
                held = self.claims.setdefault(str(e["transaction_id"]), src)
                repeats[i] = held != src
        feats = np.full((len(events), N_FEATURES), np.nan, dtype=np.float32)
        seqs = np.zeros((len(events), SEQ_LEN, N_SEQ), dtype=np.float32)
        kept = np.flatnonzero(~repeats)
        if kept.size:
            inner = self.offline.process_batch([events[i] for i in kept.tolist()])
            feats[kept], seqs[kept] = inner.features, inner.sequences
        return Staged(BatchFeatures(feats, {}, {}, repeats, seqs), self._acknowledge)

    def _acknowledge(self) -> None:
        self.acknowledged += 1
        if self.write_fails:
            raise FeatureStoreError("feature update failed: in-memory store marked failing writes")

    def warm_up(self) -> None:
        if self.down:
            raise FeatureStoreError("in-memory store marked down")


class FixedVersions:
    """`ModelRegistry`'s contract over bundles held in memory; `promote(None)` is a broken deploy."""

    def __init__(self, *bundles: ModelBundle, promoted: str | None = None) -> None:
        self.bundles = {b.version: b for b in bundles}
        self.requested = "latest"
        self._promoted = promoted or (bundles[0].version if bundles else None)
        self.broken: str | None = None if self._promoted else "no version promoted"

    def promote(self, version: str | None) -> None:
        self._promoted = version
        self.broken = None if version in self.bundles else f"version {version!r} cannot be loaded"

    def get(self, version: str) -> ModelBundle:
        if version not in self.bundles:
            raise ArtifactError(f"model version {version!r} not found")
        return self.bundles[version]

    def current(self) -> ModelBundle:
        if self.broken is not None or self._promoted is None:
            raise ArtifactError(self.broken or "no model version loaded")
        return self.bundles[self._promoted]

    @property
    def usable(self) -> ModelBundle | None:
        return None if self.broken is not None or self._promoted is None else self.bundles[self._promoted]

    def refresh(self) -> bool:
        return False


def tiny_bundle(
    version: str = "t1", thresholds: Thresholds | None = None, seed: int = 0, deep: bool = False, trees: int = 8
) -> ModelBundle:
    """A model trained in well under a second on synthetic rows where `amount` drives fraud:
    the thresholds (default: approve below 0.2, block from 0.8) give all three routes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, N_FEATURES)).astype(np.float32)
    x[:, 0] = rng.uniform(0, 1000, size=600)
    y = (x[:, 0] + rng.normal(0, 150, size=600) > 600).astype(np.float32)
    booster = xgb.train(
        {"max_depth": 3, "eta": 0.3, "objective": "binary:logistic", "seed": seed, "nthread": 1},
        xgb.DMatrix(x, label=y),
        num_boost_round=trees,
    )
    net = None
    if deep:
        import torch

        from models.deep import DeepArch, HybridNet  # torch: only for stage 2's tests

        torch.manual_seed(seed)
        net = HybridNet(DeepArch(N_FEATURES, trees, seq_len=SEQ_LEN, seq_fields=N_SEQ)).eval()
        net.set_scaler(x, rng.uniform(0, 1, size=(60, SEQ_LEN, N_SEQ)).astype(np.float32))
    return ModelBundle(
        version=version,
        path=Path("memory") / version,
        booster=booster,
        deep=net,
        mlp_only=None,
        thresholds=thresholds or Thresholds(0.2, 0.8, 0.5, 0.9, 0.5),
        manifest={},
        forest=Forest.build(booster, N_FEATURES),
    )
