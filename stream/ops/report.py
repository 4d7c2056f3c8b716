"""The backtest report: one self-contained HTML file, every plot inline as PNG."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from typing import Any

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
    for who, style in (("candidate", "--"), ("deployed", ":")):
        th = result.metrics.get("thresholds", {}).get(who)
        if th:
            ax.axvline(
                th["review_above"], linestyle=style, color="tab:red", label=f"{who}: review above {th['review_above']:.3f}"
            )
            ax.axvline(th["block_above"], linestyle=style, color="black", label=f"{who}: block above {th['block_above']:.3f}")
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
    warnings = summary.pop("warnings", [])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}figure{display:inline-block;margin:1em}"
        "pre{background:#f4f4f4;padding:1em;font-size:12px}.warn{color:#a00}"
        "table{border-collapse:collapse}td{border:1px solid #bbb;padding:2px 8px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _provenance(result.metrics),
        f"<ul id='warnings' class='warn'>{''.join(f'<li>{html.escape(w)}</li>' for w in warnings)}</ul>"
        if warnings
        else "<p id='warnings'>No warnings: warm-up, features, labels and live decisions all look complete.</p>",
        f"<pre id='summary'>{html.escape(json.dumps(summary, indent=2))}</pre>",
    ]
    for name in PLOTS:
        parts.append(f"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,{figs[name]}'></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


def _provenance(m: dict[str, Any]) -> str:
    """The table a reader checks before trusting the numbers."""
    rng, f, lab = m.get("range", {}), m.get("features", {}), m.get("labels", {})
    live = m.get("live", {})
    comp = m.get("comparison", {})
    rows = [
        ("window (record time)", f"{_when(rng.get('from_ms'))} → {_when(rng.get('to_ms'))}"),
        ("events in the window", f"{m['window']['transactions']:,} ({_when(rng.get('first_event_time'))} → "
         f"{_when(rng.get('last_event_time'))} event time)"),
        ("warm-up", f"{rng.get('warm_up_transactions', 0):,} transactions over {rng.get('lookback_days')} days"),
        ("features", f"{f.get('scored_on_live_features', 0):,} rows on live's published features, "
         f"{f.get('scored_on_rebuilt_features', 0):,} rebuilt from the topic"),
        ("rebuild = live", "-" if f.get("rebuilt_equals_live") is None else f"{f['rebuilt_equals_live']:.2%}"),
        ("labels", f"{lab.get('window_frauds_labelled', 0):,} frauds labelled in the window; "
         f"mature for {lab.get('mature_share', 0.0):.1%} (label delay {lab.get('label_delay_days')} days)"),
        ("live decisions", f"{live.get('decisions_found', 0):,} found, {live.get('missing', 0):,} missing, "
         f"{live.get('degraded', 0):,} degraded"),
        ("same decision as live", "-" if "same_decision" not in comp else f"{comp['same_decision']:.2%}"),
    ]  # fmt: skip
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table id='provenance'>{cells}</table>"


def live_scores_for(result: BacktestResult, live: dict[str, Decision]) -> np.ndarray | None:
    """Published scores aligned with the window, when every transaction has one."""
    vals = [live.get(e["transaction_id"]) for e in result.events]
    if not vals or any(v is None for v in vals):
        return None
    return np.array([v.score for v in vals if v is not None], dtype=np.float32)
