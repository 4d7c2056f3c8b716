"""Stage 1's two dependencies behind circuit breakers: the feature store and XGBoost.

Each step answers with a value or None (the dependency is down, or its breaker open) and
the seconds it took when it ran, so the batch result carries a timing only for steps that
ran. A breaker opens after `fallback.breaker_failures` failures in a row and lets one try
through after `fallback.breaker_reset_s`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import structlog
from xgboost.core import XGBoostError

from models import xgb as xgbm
from models.artifacts import ModelBundle
from stream.config import FallbackSettings
from stream.errors import FeatureStoreError
from stream.stages.breaker import CircuitBreaker
from stream.state.featurestore import Staged

log = structlog.get_logger("fraudstream.scorer")
T = TypeVar("T")


class FeatureReader(Protocol):
    """What stage 1 needs of a feature store (`RedisFeatureStore`, `stream.testing.MemoryFeatureStore`)."""

    def stage(self, events: Sequence[Mapping[str, Any]], sources: Sequence[int] | None = None) -> Staged: ...

    def warm_up(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Scored:
    """XGBoost's view of some rows: margins, probabilities, leaves when they came for free."""

    margin: np.ndarray
    p: np.ndarray
    leaves: np.ndarray | None


@dataclass(frozen=True, slots=True)
class Timed(Generic[T]):
    value: T | None  # None: the step could not run
    seconds: float | None  # None: it did not run at all (breaker open)


class GuardedFeatures:
    """The feature store in two steps: `read` (features, the state write sent) and `acknowledge`
    (the write applied); the breaker counts a batch as a success only once both held."""

    def __init__(self, store: FeatureReader, fallback: FallbackSettings, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.breaker = CircuitBreaker("redis", fallback.breaker_failures, fallback.breaker_reset_s, clock)

    def read(self, events: Sequence[Mapping[str, Any]], sources: Sequence[int]) -> Timed[Staged]:
        if not self.breaker.allow():
            return Timed(None, None)
        t = self.clock()
        try:
            result = self.store.stage(events, sources)
        except FeatureStoreError as exc:
            self._failed(exc)
            return Timed(None, self.clock() - t)
        return Timed(result, self.clock() - t)

    def acknowledge(self, staged: Staged) -> Timed[bool]:
        """Wait for the batch's state write: True when applied, None (and a failure) when not."""
        t = self.clock()
        try:
            staged.acknowledge()
        except FeatureStoreError as exc:
            self._failed(exc)
            return Timed(None, self.clock() - t)
        self.breaker.success()
        return Timed(True, self.clock() - t)

    def _failed(self, exc: FeatureStoreError) -> None:
        self.breaker.failure()
        log.warning("features_unavailable", error=str(exc), breaker=self.breaker.state.value)


class GuardedXGBoost:
    def __init__(self, fallback: FallbackSettings, clock: Callable[[], float], threads: int = 1) -> None:
        self.deadline_s = fallback.xgb_deadline_ms / 1000
        # One thread: the compiled walk beats XGBoost at every batch size (`models.xgb.FOREST_MAX_ROWS`).
        self.walk_rows = xgbm.FOREST_MAX_ROWS if threads > 1 else math.inf
        self.clock = clock
        self.breaker = CircuitBreaker("xgboost", fallback.breaker_failures, fallback.breaker_reset_s, clock)

    def score(self, bundle: ModelBundle, x: np.ndarray) -> Timed[Scored]:
        """Margins, probabilities and (small batches) leaves, or None when XGBoost cannot be used."""
        if not self.breaker.allow():
            return Timed(None, None)
        t = self.clock()
        leaves = None
        try:
            if bundle.forest is not None and len(x) <= self.walk_rows:
                margin, leaves = bundle.forest.predict(x)
            else:
                margin = xgbm.margins(bundle.booster, x)
        except (ValueError, RuntimeError, XGBoostError) as exc:
            self.breaker.failure()
            log.error("xgboost_failed", error=str(exc), breaker=self.breaker.state.value)
            return Timed(None, self.clock() - t)
        elapsed = self.clock() - t
        if elapsed > self.deadline_s:
            self.breaker.failure()  # this batch's scores stand; repeated slowness opens the breaker
            log.warning("xgboost_over_deadline", ms=round(elapsed * 1000, 1), breaker=self.breaker.state.value)
        else:
            self.breaker.success()
        return Timed(Scored(margin, xgbm.sigmoid(margin), leaves), elapsed)


def now_ms() -> int:
    return int(time.time() * 1000)
