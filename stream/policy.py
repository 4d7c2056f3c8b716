"""The decision engine: pure functions from scores to decisions, numpy in, numpy out.

No Kafka, no Redis. Routes and outcomes are small integer codes matching the
order of the Avro enums in `schemas/decision.avsc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from models.features import stable_hashes


class Route(IntEnum):
    XGB_APPROVE = 0
    XGB_BLOCK = 1
    DEEP = 2
    XGB_FALLBACK = 3
    RULES = 4
    SAFE_DEFAULT = 5


class Outcome(IntEnum):
    APPROVE = 0
    REVIEW = 1
    BLOCK = 2


ROUTE_NAMES = [r.name for r in Route]
OUTCOME_NAMES = [o.name for o in Outcome]
AMBIGUOUS = -1  # stage-1 route code for "send to the deep stage"


@dataclass(frozen=True, slots=True)
class Arm:
    """An A/B arm: a share of customers, a model version and its thresholds."""

    name: str
    share: float
    model_version: str | None  # None: the promoted version (follows `models promote`)


def assign_arms(customer_ids: Sequence[str], arms: Sequence[Arm]) -> np.ndarray:
    """Arm index per customer by a stable hash, (n,) int8; the same customer always lands in the same arm."""
    if len(arms) == 1:
        return np.zeros(len(customer_ids), dtype=np.int8)
    edges = np.cumsum([a.share for a in arms])
    edges = edges / edges[-1]
    u = (stable_hashes(customer_ids) % 10_000).astype(np.float64) / 10_000
    return np.searchsorted(edges, u, side="right").clip(0, len(arms) - 1).astype(np.int8)


def route(xgb_p: np.ndarray, approve_below: np.ndarray, block_above: np.ndarray) -> np.ndarray:
    """Stage-1 routing, (n,) int8: Route.XGB_APPROVE, Route.XGB_BLOCK or AMBIGUOUS.

    Thresholds are per row so that each A/B arm can carry its own band.
    """
    out = np.full(xgb_p.shape, AMBIGUOUS, dtype=np.int8)
    out[xgb_p < approve_below] = Route.XGB_APPROVE
    out[xgb_p >= block_above] = Route.XGB_BLOCK
    return out


def stage1_outcomes(routes: np.ndarray) -> np.ndarray:
    """Outcome of the rows stage 1 decides itself."""
    return np.where(routes == Route.XGB_BLOCK, Outcome.BLOCK, Outcome.APPROVE).astype(np.int8)


def deep_outcomes(deep_p: np.ndarray, review_above: np.ndarray, block_above: np.ndarray) -> np.ndarray:
    """Outcome of the deep stage on the hybrid score, (n,) int8."""
    out = np.full(deep_p.shape, Outcome.APPROVE, dtype=np.int8)
    out[deep_p >= review_above] = Outcome.REVIEW
    out[deep_p >= block_above] = Outcome.BLOCK
    return out


def top_reasons(
    contributions: np.ndarray, values: np.ndarray, names: Sequence[str], k: int = 4
) -> list[list[tuple[str, float, float]]]:
    """Per row, the k features pushing hardest towards fraud: (name, value, contribution).

    contributions (n, F) float, values (n, F) float; only positive contributions count.
    """
    out: list[list[tuple[str, float, float]]] = []
    if len(contributions) == 0:
        return out
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    for i, idx in enumerate(order):
        out.append([(names[j], float(values[i, j]), float(contributions[i, j])) for j in idx if contributions[i, j] > 0])
    return out
