"""`fraudstream explain`: the audit view of one decision.

Finds the published decision, rebuilds the transaction's features from the topic
(the same offline state a backtest uses), and recomputes exact explanations with
the model version that decided: TreeSHAP for XGBoost, integrated gradients for the
torch model — side by side with the feature values.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import xgb as xgbm
from models.artifacts import load_bundle, version_path
from models.attribution import Attribution, integrated_gradients, tree_shap
from models.decision import Route
from models.features import FeatureEngine, OfflineFeatures
from models.featureset import FEATURE_NAMES
from models.units import DAY_MS
from stream.config import KafkaSettings
from stream.errors import ConfigError, PoisonError
from stream.kafka.schema_registry import codec_for
from stream.ops.timerange import read_range
from stream.records import Decision


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    transaction: dict[str, Any]
    values: np.ndarray  # (F,)
    xgb: Attribution
    deep: Attribution | None  # None when stage 1 decided alone

    def rows(self, k: int = 10) -> list[tuple[str, float, float, float]]:
        """(feature, value, xgb contribution, deep attribution), strongest first."""
        deep = self.deep.contributions if self.deep is not None else np.zeros(len(FEATURE_NAMES))
        strength = np.abs(self.xgb.contributions) + np.abs(deep)
        order = np.argsort(-strength, kind="stable")[:k]
        return [(FEATURE_NAMES[i], float(self.values[i]), float(self.xgb.contributions[i]), float(deep[i])) for i in order]


def explain(
    kafka: KafkaSettings, model_root: Path, transaction_id: str, start_ms: int, end_ms: int | None, lookback_days: float
) -> Explanation:
    """Find, rebuild and explain one decision."""
    codec = codec_for(kafka)
    decision = None
    for m in read_range(kafka, kafka.topics.decisions, start_ms, end_ms):
        if m.key() == transaction_id.encode():
            decision = codec.decode_decision(m.value())
    if decision is None:
        raise ConfigError(f"no decision for transaction {transaction_id} in the range")
    found: list[tuple[int, int, int, dict[str, Any]]] = []  # (event time, partition, offset, transaction)
    for m in read_range(kafka, kafka.topics.transactions, start_ms - int(lookback_days * DAY_MS), end_ms):
        try:
            tx = codec.decode("Transaction", m.value())
        except PoisonError:
            continue  # dead-lettered records are not part of any state
        found.append((tx["event_time"], m.partition() or 0, m.offset() or 0, tx))
        if tx["transaction_id"] == transaction_id:
            break
    events = [tx for *_, tx in sorted(found, key=lambda f: f[:3])]
    idx = next((i for i, e in enumerate(events) if e["transaction_id"] == transaction_id), None)
    if idx is None:
        raise ConfigError(f"transaction {transaction_id} not found in the range")
    labels = sorted(
        (codec.decode("Label", m.value()) for m in read_range(kafka, kafka.topics.labels, 0, None)),
        key=lambda lab: lab["label_time"],
    )
    bundle = load_bundle(version_path(model_root, decision.model_version))
    delay = bundle.delay_days
    x = OfflineFeatures(FeatureEngine(delay)).run(events[: idx + 1], [lab for lab in labels if lab["is_fraud"]])[idx]
    shap = tree_shap(bundle.booster, x)
    deep = None
    if decision.route == Route.DEEP:
        leaves = xgbm.leaves(bundle.booster, x[None, :])[0]
        deep = integrated_gradients(bundle.net, x, shap.output, leaves)
    return Explanation(decision, events[idx], x, shap, deep)


def to_html(e: Explanation) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f)}</td><td>{v:.4g}</td><td>{a:+.4f}</td><td>{b:+.4f}</td></tr>"
        for f, v, a, b in e.rows(len(FEATURE_NAMES))
    )
    d = e.decision
    deep = f"{e.deep.base:+.4f} baseline logit → {e.deep.output:+.4f}" if e.deep else "not used (stage 1 decided)"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>explain</title></head><body>"
        f"<h1>Decision {html.escape(d.transaction_id)}: {d.outcome.name} via {d.route.name}</h1>"
        f"<p>model {html.escape(d.model_version)}; XGBoost margin {e.xgb.output:+.4f} = bias {e.xgb.base:+.4f} + "
        f"contributions; deep model: {deep}</p>"
        "<table border='1'><tr><th>feature</th><th>value</th><th>XGBoost (TreeSHAP)</th><th>MLP (integrated gradients)</th></tr>"
        f"{rows}</table></body></html>"
    )
