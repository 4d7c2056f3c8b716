"""The backtest report: one self-contained HTML file, every plot inline as PNG."""

from __future__ import annotations

import base64
import html
import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from stream.ops.backtest import BacktestResult
from stream.records import Decision

PLOTS = ("roc", "pr", "histogram", "sweep", "routes", "latency", "comparison")


def _curve_roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    yy = y[order]
    tpr = np.concatenate([[0], np.cumsum(yy) / max(yy.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(~yy) / max((~yy).sum(), 1)])
    return fpr, tpr


def _curve_pr(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    yy = y[order]
    tp = np.cumsum(yy)
    return tp / max(yy.sum(), 1), tp / np.arange(1, len(yy) + 1)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def figures(result: BacktestResult, live_scores: np.ndarray | None) -> dict[str, str]:
    """Plot name -> base64 PNG."""
    y, sc = result.y, result.scored
    curves = {"candidate (decision score)": sc.score, "candidate XGBoost": sc.xgb_p}
    if live_scores is not None:
        curves["live (published)"] = live_scores
    out: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, s in curves.items():
        fpr, tpr = _curve_roc(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(fontsize=7)
    out["roc"] = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, s in curves.items():
        rec, prec = _curve_pr(y, s)
        ax.plot(rec, prec, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(fontsize=7)
    out["pr"] = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    bins = [i / 40 for i in range(41)]
    ax.hist(sc.score[~y], bins=bins, alpha=0.6, label="legitimate", density=True, log=True)
    ax.hist(sc.score[y], bins=bins, alpha=0.6, label="fraud", density=True, log=True)
    ax.set(xlabel="decision score", ylabel="density (log)", title="Scores by label")
    ax.legend(fontsize=7)
    out["histogram"] = _png(fig)
    sw = result.metrics["candidate"]["sweep"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(sw["threshold"], sw["flagged_share"], label="share flagged (review/block)")
    ax.plot(sw["threshold"], sw["fraud_caught"], label="frauds caught")
    ax.plot(sw["threshold"], sw["amount_saved"], label="fraud amount saved")
    ax.set(xlabel="threshold on the decision score", ylabel="share", title="Threshold sweep")
    ax.legend(fontsize=7)
    out["sweep"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    cand = result.metrics["candidate"]["decisions"]
    live = result.metrics.get("live", {}).get("decisions", {})
    keys = sorted(set(cand) | set(live))
    pos = np.arange(len(keys))
    ax.barh(pos - 0.2, [cand.get(k, 0) for k in keys], height=0.4, label="candidate")
    ax.barh(pos + 0.2, [live.get(k, 0) for k in keys], height=0.4, label="live")
    ax.set_yticks(pos, keys, fontsize=7)
    ax.set(xlabel="decisions", title="Decisions by route/outcome")
    ax.legend(fontsize=7)
    out["routes"] = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    lat = result.metrics.get("live", {}).get("latency_ms", {}).get("values", [])
    if lat:
        ax.hist(lat, bins=50)
    ax.set(xlabel="ms (input appended → decision)", ylabel="decisions", title="Latency of live decisions")
    out["latency"] = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    conf = result.metrics.get("comparison", {}).get("confusion_live_vs_candidate", {})
    names = ["APPROVE", "REVIEW", "BLOCK"]
    grid = np.array([[conf.get(f"{a}->{b}", 0) for b in names] for a in names])
    ax.imshow(grid, cmap="Blues")
    for i in range(3):
        for j in range(3):
            ax.text(j, i, str(grid[i, j]), ha="center", va="center")
    ax.set_xticks(range(3), names)
    ax.set_yticks(range(3), names)
    ax.set(xlabel="candidate", ylabel="live", title="Live vs candidate decisions")
    out["comparison"] = _png(fig)
    return out


def render(result: BacktestResult, live_scores: np.ndarray | None, title: str) -> str:
    """The report as one HTML string."""
    figs = figures(result, live_scores)
    summary = dict(result.metrics.items())
    if "live" in summary:
        summary["live"] = {k: v for k, v in summary["live"].items() if k != "latency_ms"} | {
            "latency_ms": {k: v for k, v in summary["live"]["latency_ms"].items() if k != "values"}
        }
    summary["candidate"] = {k: v for k, v in summary["candidate"].items() if k != "sweep"}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}figure{display:inline-block;margin:1em}"
        "pre{background:#f4f4f4;padding:1em;font-size:12px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<pre id='summary'>{html.escape(json.dumps(summary, indent=2))}</pre>",
    ]
    for name in PLOTS:
        parts.append(f"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,{figs[name]}'></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def live_scores_for(result: BacktestResult, live: dict[str, Decision]) -> np.ndarray | None:
    """Published scores aligned with the window, when every transaction has one."""
    vals = [live.get(e["transaction_id"]) for e in result.events]
    if not vals or any(v is None for v in vals):
        return None
    return np.array([v.score for v in vals if v is not None], dtype=np.float32)
