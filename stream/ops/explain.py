"""`fraudstream explain`: the audit view of one decision.

Finds the published decision and explains it from the feature vector it carries — the
state the live stage actually saw — with the model version that decided: TreeSHAP for
XGBoost, integrated gradients for the torch model, side by side with the values.

Every score the decision published is recomputed from those features and shown next
to the published one; a difference is a `ReproductionError` (the explanation would be
of something that did not decide). The features are also rebuilt from the transactions
topic alone (what a backtest without a warm-up sees) and every feature where that
rebuild differs is listed: state that came from elsewhere — a warm-up, a backfill,
events older than the look-back — shows up there instead of silently changing the
numbers. A decision that carries no features (written before decisions carried them,
or decided by the rules with Redis down) is explained from the rebuild, and says so.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import xgb as xgbm
from models.artifacts import ModelBundle, load_bundle, version_path
from models.attribution import Attribution, integrated_gradients, tree_shap
from models.decision import Route
from models.deep import predict_proba
from models.features import FeatureEngine
from models.featureset import FEATURE_NAMES, FEATURE_SET_VERSION
from models.offline import OfflineFeatures
from models.units import DAY_MS
from stream.config import KafkaSettings
from stream.errors import ConfigError, PoisonError, ReproductionError
from stream.kafka.schema_registry import codec_for
from stream.ops.timerange import read_range
from stream.records import Decision

#: published scores are float32; a recomputation within this is the same score
TOLERANCE = 1e-5

CARRIED = "carried by the decision"
REBUILT = "rebuilt from the transactions topic"


@dataclass(frozen=True)
class Check:
    """One published score against the same score recomputed here."""

    name: str
    published: float
    recomputed: float

    @property
    def ok(self) -> bool:
        return abs(self.published - self.recomputed) <= TOLERANCE


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    transaction: dict[str, Any] | None  # None when the topic no longer holds it
    values: np.ndarray  # (F,) what the explanation is of
    source: str  # CARRIED or REBUILT
    xgb: Attribution
    deep: Attribution | None  # None when stage 1 decided alone
    checks: tuple[Check, ...]
    rebuilt: np.ndarray | None  # (F,) the features from the topic alone; None when not found

    def rows(self, k: int = 10) -> list[tuple[str, float, float, float]]:
        """(feature, value, xgb contribution, deep attribution), strongest first."""
        deep = self.deep.contributions if self.deep is not None else np.zeros(len(FEATURE_NAMES))
        strength = np.abs(self.xgb.contributions) + np.abs(deep)
        order = np.argsort(-strength, kind="stable")[:k]
        return [(FEATURE_NAMES[i], float(self.values[i]), float(self.xgb.contributions[i]), float(deep[i])) for i in order]

    @property
    def reproduced(self) -> bool:
        return all(c.ok for c in self.checks)

    def rebuild_differences(self) -> list[tuple[str, float, float]]:
        """(feature, value the decision saw, value rebuilt from the topic) where they differ."""
        if self.rebuilt is None or self.source == REBUILT:
            return []
        same = np.isclose(self.values, self.rebuilt, rtol=1e-6, atol=1e-6, equal_nan=True)
        return [(FEATURE_NAMES[i], float(self.values[i]), float(self.rebuilt[i])) for i in np.flatnonzero(~same)]

    def warnings(self) -> list[str]:
        out = [
            f"{c.name}: published {c.published:.6f}, recomputed {c.recomputed:.6f} — "
            "this explanation is not of the state that decided"
            for c in self.checks
            if not c.ok
        ]
        if self.source == REBUILT:
            why = (
                "it was decided without feature state (rules / safe default)"
                if self.decision.route in (Route.RULES, Route.SAFE_DEFAULT)
                else "it was written before decisions carried their features"
                if not self.decision.features
                else f"it carries feature set {self.decision.feature_set_version!r}, this build computes {FEATURE_SET_VERSION!r}"
            )
            out.append(f"features {REBUILT}: the decision carries none usable ({why})")
        diffs = self.rebuild_differences()
        if diffs:
            out.append(
                f"rebuilding from the topic alone gives other values for {len(diffs)} feature(s) "
                f"({', '.join(f for f, *_ in diffs[:5])}{', ...' if len(diffs) > 5 else ''}): "
                "part of the state this decision saw did not come from the topic's look-back "
                "(a warm-up, a backfill, older events) — a backtest without that state scores differently"
            )
        if self.transaction is None:
            out.append("the transaction itself is no longer on the topic in the range searched")
        return out


def explain(
    kafka: KafkaSettings, model_root: Path, transaction_id: str, start_ms: int, end_ms: int | None, lookback_days: float
) -> Explanation:
    """Find, reproduce and explain one decision (`require_reproduced` checks the result)."""
    codec = codec_for(kafka)
    decision = None
    for m in read_range(kafka, kafka.topics.decisions, start_ms, end_ms):
        if m.key() == transaction_id.encode():
            decision = codec.decode_decision(m.value())
    if decision is None:
        raise ConfigError(f"no decision for transaction {transaction_id} in the range")
    bundle = load_bundle(version_path(model_root, decision.model_version))
    transaction, rebuilt = _rebuild(kafka, bundle, transaction_id, start_ms, end_ms, lookback_days)
    carried = np.array(decision.features, dtype=np.float32)
    if decision.feature_set_version == FEATURE_SET_VERSION and carried.shape == (len(FEATURE_NAMES),):
        values, source = carried, CARRIED
    elif rebuilt is not None:
        values, source = rebuilt, REBUILT
    else:
        raise ConfigError(f"transaction {transaction_id}: the decision carries no features and the topic no longer holds it")
    return explanation(decision, bundle, values, source, transaction, rebuilt)


def require_reproduced(e: Explanation) -> None:
    """ReproductionError naming each published score the explanation did not reproduce."""
    failed = [c for c in e.checks if not c.ok]
    if failed:
        raise ReproductionError(
            f"transaction {e.decision.transaction_id}, features {e.source}: "
            + "; ".join(f"{c.name} published {c.published:.6f}, recomputed {c.recomputed:.6f}" for c in failed)
            + " — this explanation is not of the state that decided"
        )


def explanation(
    decision: Decision,
    bundle: ModelBundle,
    values: np.ndarray,
    source: str,
    transaction: dict[str, Any] | None = None,
    rebuilt: np.ndarray | None = None,
    sequence: np.ndarray | None = None,
) -> Explanation:
    """Attributions of `values` with `bundle`, and each published score recomputed (no I/O).
    `sequence`: the card sequence the deep score read; the decision's own when not given."""
    x = values.astype(np.float32)
    margin = xgbm.margins(bundle.booster, x[None, :])
    checks: list[Check] = []
    if decision.xgb_score is not None:
        checks.append(Check("XGBoost score", float(decision.xgb_score), float(xgbm.sigmoid(margin)[0])))
    deep = None
    if decision.route == Route.DEEP:
        leaves = xgbm.leaves(bundle.booster, x[None, :])
        flat = np.asarray(decision.sequence if sequence is None else sequence, dtype=np.float32)
        net = bundle.net
        if net.arch.seq_len and flat.size != net.arch.seq_len * net.arch.seq_fields:
            raise ConfigError(
                f"transaction {decision.transaction_id}: the decision carries no card sequence to recompute its deep score"
            )
        seq = flat.reshape(1, net.arch.seq_len, net.arch.seq_fields) if net.arch.seq_len else None
        if decision.deep_score is not None:
            p = predict_proba(net, x[None, :], margin, leaves, seq)
            checks.append(Check("deep score", float(decision.deep_score), float(p[0])))
        deep = integrated_gradients(net, x, float(margin[0]), leaves[0], seq)
    shap = tree_shap(bundle.booster, x)
    return Explanation(decision, transaction, x, source, shap, deep, tuple(checks), rebuilt)


def _rebuild(
    kafka: KafkaSettings, bundle: ModelBundle, transaction_id: str, start_ms: int, end_ms: int | None, lookback_days: float
) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """The transaction and its features from the topic's look-back alone, with the labels received."""
    codec = codec_for(kafka)
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
        return None, None
    labels = sorted(
        (codec.decode("Label", m.value()) for m in read_range(kafka, kafka.topics.labels, 0, None)),
        key=lambda lab: lab["label_time"],
    )
    offline = OfflineFeatures(FeatureEngine(bundle.delay_days))
    x = offline.run(events[: idx + 1], [lab for lab in labels if lab["is_fraud"]])[idx]
    return events[idx], x


def to_html(e: Explanation) -> str:
    rebuilt = {f: r for f, _, r in e.rebuild_differences()}
    rows = "".join(
        f"<tr{' class=differs' if f in rebuilt else ''}><td>{html.escape(f)}</td><td>{v:.4g}</td>"
        f"<td>{a:+.4f}</td><td>{b:+.4f}</td><td>{f'{rebuilt[f]:.4g}' if f in rebuilt else ''}</td></tr>"
        for f, v, a, b in e.rows(len(FEATURE_NAMES))
    )
    checks = "".join(
        f"<tr class={'ok' if c.ok else 'differs'}><td>{html.escape(c.name)}</td><td>{c.published:.6f}</td>"
        f"<td>{c.recomputed:.6f}</td><td>{'same' if c.ok else 'DIFFERS'}</td></tr>"
        for c in e.checks
    )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in e.warnings())
    d = e.decision
    deep = f"{e.deep.base:+.4f} baseline logit → {e.deep.output:+.4f}" if e.deep else "not used (stage 1 decided)"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>explain</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px}"
        ".differs{background:#fdd}.ok{background:#dfd}.warn{color:#a00}</style></head><body>"
        f"<h1>Decision {html.escape(d.transaction_id)}: {d.outcome.name} via {d.route.name}</h1>"
        f"<p>model {html.escape(d.model_version)}; features {html.escape(e.source)}; XGBoost margin {e.xgb.output:+.4f} = "
        f"bias {e.xgb.base:+.4f} + contributions; deep model: {deep}</p>"
        "<h2>Published and recomputed</h2><table><tr><th>score</th><th>published</th><th>recomputed</th><th></th></tr>"
        f"{checks or '<tr><td colspan=4>no model score was published (rules / safe default)</td></tr>'}</table>"
        + (f"<h2>Warnings</h2><ul class=warn>{warnings}</ul>" if warnings else "")
        + "<h2>Features</h2><table><tr><th>feature</th><th>value</th><th>XGBoost (TreeSHAP)</th>"
        "<th>MLP (integrated gradients)</th><th>rebuilt from the topic (where it differs)</th></tr>"
        f"{rows}</table></body></html>"
    )
