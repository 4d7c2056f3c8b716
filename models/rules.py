"""Static rules: the fallback when XGBoost cannot score.

Rules look at the event's own fields and, when the feature store answered, at a
few features (a new device). Evaluated per row, in order, first match wins:

- a rule that matches decides (REVIEW or BLOCK);
- no rule matches and every rule could be evaluated → the configured
  `no_match` outcome (APPROVE by default: the rules said so);
- no rule matches but a rule needed a feature that is unavailable → None, and the
  caller applies the safe default. A row is never approved by omission.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.decision import Outcome
from models.featureset import FEATURE_NAMES

_DEVICE_NEW = FEATURE_NAMES.index("device_new")


class Rule(BaseModel):
    """All given conditions must hold for the rule to match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the rule's name, carried in the decision's reasons")
    outcome: Literal["REVIEW", "BLOCK"] = Field("REVIEW", description="the outcome when the rule matches")
    min_amount: int | None = Field(None, ge=0, description="matches amounts from this many minor units")
    channels: tuple[str, ...] | None = Field(None, description="matches these channels only")
    device_new: bool | None = Field(None, description="matches a device new to the card (needs the feature store)")
    device_missing: bool | None = Field(None, description="matches a transaction with (or without) a device id")

    @property
    def needs_features(self) -> bool:
        return self.device_new is not None


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(name="very_large_amount", outcome="REVIEW", min_amount=200_000),
    Rule(name="new_device_large_amount", outcome="REVIEW", min_amount=30_000, device_new=True),
    Rule(name="large_online_amount", outcome="REVIEW", min_amount=50_000, channels=("ECOM", "MOTO")),
)


def evaluate(
    rules: Sequence[Rule],
    events: Sequence[Mapping[str, Any]],
    features: np.ndarray | None,  # (n, F) float32, None when the feature store is down
    no_match: Outcome = Outcome.APPROVE,
) -> tuple[np.ndarray, list[str | None]]:
    """Outcome per row, (n,) int8 with -1 = undecidable (use the safe default), and the matching rule."""
    n = len(events)
    out = np.full(n, -1, dtype=np.int8)
    names: list[str | None] = [None] * n
    for i, ev in enumerate(events):
        blocked_by_missing = False
        for rule in rules:
            if rule.needs_features and features is None:
                blocked_by_missing = True
                continue
            if _matches(rule, ev, None if features is None else features[i]):
                out[i] = Outcome[rule.outcome]
                names[i] = rule.name
                break
        else:
            if not blocked_by_missing:
                out[i] = no_match
    return out, names


def _matches(rule: Rule, ev: Mapping[str, Any], feats: np.ndarray | None) -> bool:
    if rule.min_amount is not None and int(ev["amount"]) < rule.min_amount:
        return False
    if rule.channels is not None and ev.get("channel") not in rule.channels:
        return False
    if rule.device_missing is not None and (ev.get("device_id") is None) != rule.device_missing:
        return False
    if rule.device_new is not None:
        if feats is None:
            return False
        if bool(feats[_DEVICE_NEW] == 1.0) != rule.device_new:
            return False
    return True
