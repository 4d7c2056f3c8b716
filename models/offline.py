"""The offline feature store: `FeatureEngine` over in-memory state, for training,
evaluation, backtests and the parity tests of the online store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.card import updated
from models.features import BatchFeatures, FeatureEngine
from models.featureset import FRAUD, N_FEATURES, TX, empty_ring, ring_add
from models.sequence import N_SEQ, SEQ_LEN
from models.units import DAY_MS


@dataclass(frozen=True, slots=True)
class FeatureRows:
    """What the models read of a stream: feature vectors and the card sequences."""

    x: np.ndarray  # (n, N_FEATURES) float32
    seq: np.ndarray  # (n, SEQ_LEN, N_SEQ) float32

    def __getitem__(self, rows: Any) -> FeatureRows:
        return FeatureRows(self.x[rows], self.seq[rows])

    def __len__(self) -> int:
        return len(self.x)


class OfflineFeatures:
    """In-memory state for training, evaluation and backtests."""

    def __init__(self, engine: FeatureEngine) -> None:
        self.engine = engine
        self.customers: dict[str, np.ndarray] = {}  # customer id -> card (models.card)
        self.terminals: dict[str, np.ndarray] = {}
        self._labelled: set[str] = set()

    def apply_label(self, transaction_id: str, terminal_id: str, event_time: int, is_fraud: bool) -> None:
        """A fraud report, counted once per transaction id."""
        if not is_fraud or transaction_id in self._labelled:
            return
        self._labelled.add(transaction_id)
        ring_add(self.terminals.setdefault(terminal_id, empty_ring()), event_time // DAY_MS, FRAUD, 1)

    def process_batch(self, events: Sequence[Mapping[str, Any]]) -> BatchFeatures:
        """A batch's features and sequences, then the state updated as the online store would."""
        result = self.engine.transform(events, self.customers, self.terminals)
        _, after = updated(self.customers, result.appended)
        for j, cid in enumerate(result.appended):
            self.customers[cid] = after[j : j + 1].copy()
        for (tid, day), count in result.terminal_counts.items():
            ring_add(self.terminals.setdefault(tid, empty_ring()), day, TX, count)
        return result

    def process(self, events: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Features of a batch, then the state updated."""
        return self.process_batch(events).features

    def rows(
        self, events: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]] = (), batch: int = 512
    ) -> FeatureRows:
        """Features and sequences of a time-ordered stream, labels applied once their label_time has passed."""
        x = np.empty((len(events), N_FEATURES), dtype=np.float32)
        seq = np.empty((len(events), SEQ_LEN, N_SEQ), dtype=np.float32)
        li = 0
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            t0 = int(chunk[0]["event_time"])
            while li < len(labels) and int(labels[li]["label_time"]) <= t0:
                lab = labels[li]
                self.apply_label(lab["transaction_id"], lab["terminal_id"], int(lab["event_time"]), bool(lab["is_fraud"]))
                li += 1
            result = self.process_batch(chunk)
            x[start : start + len(chunk)] = result.features
            seq[start : start + len(chunk)] = result.sequences
        return FeatureRows(x, seq)

    def run(self, events: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]] = (), batch: int = 512) -> np.ndarray:
        """Features of a time-ordered stream (see `rows`)."""
        return self.rows(events, labels, batch).x
