"""The decision core: every way fraudstream turns scores into decisions, in one place.

Pure functions, numpy in, numpy out; no Kafka, Redis or HTTP. Stage 1, stage 2, the
shadow scorer, backtests and training's evaluation all decide through this module.

    route          stage 1's band: XGB_APPROVE below `approve_below`, XGB_BLOCK at or above
                   `block_above`, AMBIGUOUS (to the deep stage) between
    stage_one      route + outcomes; with the deep stage down the band is decided here
                   (XGB_FALLBACK: REVIEW at or above `fallback_review_above`)
    deep_outcomes  stage 2 on the hybrid score: REVIEW at `review_above`, BLOCK at `deep_block_above`
    cascade        both stages over rows whose hybrid score is known (backtests, training)
    fallback_outcomes  the band from the XGBoost score alone; without a cut-off, REVIEW for all
    Level          how far down the ladder a batch went: NORMAL, XGB_FALLBACK, RULES, SAFE_DEFAULT
                   (the rules themselves are in `models.rules`)

Routes and outcomes are small integer codes in the order of the Avro enums in
`schemas/decision.avsc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from models.errors import ArtifactError
from models.featureset import stable_hashes


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


class Level(IntEnum):
    """How degraded a batch was; exported as the fallback-level metric."""

    NORMAL = 0
    XGB_FALLBACK = 1
    RULES = 2
    SAFE_DEFAULT = 3


ROUTE_NAMES = [r.name for r in Route]
OUTCOME_NAMES = [o.name for o in Outcome]
AMBIGUOUS = -1  # stage-1 route code for "send to the deep stage"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The approve/block band on the XGBoost score and the hybrid REVIEW/BLOCK cut-offs."""

    approve_below: float
    block_above: float
    review_above: float
    deep_block_above: float
    fallback_review_above: float  # XGBoost-only REVIEW cut-off in the band, used while the deep stage is down

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__slots__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Thresholds:
        d = dict(d)
        # Versions trained before the fallback threshold existed review the upper half of the band.
        d.setdefault("fallback_review_above", (float(d.get("approve_below", 0)) + float(d.get("block_above", 1))) / 2)
        try:
            return cls(*(float(d[k]) for k in cls.__slots__))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"thresholds in manifest are incomplete: {exc}") from exc


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


def route(xgb_p: np.ndarray, approve_below: float | np.ndarray, block_above: float | np.ndarray) -> np.ndarray:
    """Stage-1 routing, (n,) int8: Route.XGB_APPROVE, Route.XGB_BLOCK or AMBIGUOUS."""
    out = np.full(xgb_p.shape, AMBIGUOUS, dtype=np.int8)
    out[xgb_p < approve_below] = Route.XGB_APPROVE
    out[xgb_p >= block_above] = Route.XGB_BLOCK
    return out


def fallback_outcomes(xgb_p: np.ndarray, review_above: float | None) -> np.ndarray:
    """The band decided on the XGBoost score alone (deep stage down or its version unusable):
    REVIEW at or above the cut-off, APPROVE below; REVIEW for every row when no cut-off is known."""
    if review_above is None:
        return np.full(xgb_p.shape, Outcome.REVIEW, dtype=np.int8)
    return np.where(xgb_p >= review_above, Outcome.REVIEW, Outcome.APPROVE).astype(np.int8)


def stage_one(xgb_p: np.ndarray, th: Thresholds, deep_available: bool) -> tuple[np.ndarray, np.ndarray]:
    """(routes, outcomes) of stage 1. The band keeps route AMBIGUOUS (outcome undecided, APPROVE
    as placeholder) when the deep stage is available, else becomes XGB_FALLBACK and is decided."""
    routes = route(xgb_p, th.approve_below, th.block_above)
    outcomes = np.where(routes == Route.XGB_BLOCK, Outcome.BLOCK, Outcome.APPROVE).astype(np.int8)
    if not deep_available:
        band = routes == AMBIGUOUS
        routes[band] = Route.XGB_FALLBACK
        outcomes[band] = fallback_outcomes(xgb_p[band], th.fallback_review_above)
    return routes, outcomes


def deep_outcomes(deep_p: np.ndarray, th: Thresholds) -> np.ndarray:
    """Outcome of the deep stage on the hybrid score, (n,) int8."""
    out = np.full(deep_p.shape, Outcome.APPROVE, dtype=np.int8)
    out[deep_p >= th.review_above] = Outcome.REVIEW
    out[deep_p >= th.deep_block_above] = Outcome.BLOCK
    return out


def cascade(xgb_p: np.ndarray, deep_p: np.ndarray, th: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """(routes, outcomes) of both stages: stage 1, then the deep stage on the band. `deep_p`
    is read only in the band (rows outside may hold anything, NaN included)."""
    routes, outcomes = stage_one(xgb_p, th, deep_available=True)
    band = routes == AMBIGUOUS
    outcomes[band] = deep_outcomes(deep_p[band], th)
    routes[band] = Route.DEEP
    return routes, outcomes


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
