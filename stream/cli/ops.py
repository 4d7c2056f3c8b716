"""Operator commands: dead letters, backtests, replay, explanations, shadow."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from models.errors import FraudstreamError
from stream.cli.app import ConfigOpt, FromOpt, ToOpt, app, command, console, dlq_app, settings_from


@command(dlq_app, "list")
def dlq_list(config: ConfigOpt = None, error: Annotated[str | None, typer.Option(help="only this error class")] = None) -> None:
    """One line per DLQ record: where it came from and why."""
    from stream.ops.dlq import read_dlq

    settings = settings_from(config)
    t = Table()
    for c in ("ref", "error", "stage", "source", "reason"):
        t.add_column(c)
    n = 0
    for d in read_dlq(settings.kafka):
        h = d.headers
        if error and h.get("error.class") != error:
            continue
        n += 1
        source = f"{h.get('source.topic')}/{h.get('source.partition')}:{h.get('source.offset')}"
        t.add_row(d.ref, h.get("error.class", "?"), h.get("stage", "?"), source, h.get("error.message", "")[:80])
    console.print(t)
    console.print(f"{n} record(s)")


@command(dlq_app, "show")
def dlq_show(ref: Annotated[str, typer.Argument(help="PARTITION:OFFSET in the DLQ")], config: ConfigOpt = None) -> None:
    """Headers and bytes of one DLQ record."""
    from stream.ops.dlq import read_dlq

    settings = settings_from(config)
    for d in read_dlq(settings.kafka):
        if d.ref == ref:
            for k, v in d.headers.items():
                console.print(f"{k}: {v}")
            console.print(f"key: {d.key!r}")
            console.print(f"value ({len(d.value or b'')} bytes): {(d.value or b'')[:256].hex(' ')}")
            return
    raise FraudstreamError(f"no DLQ record {ref}")


@command(dlq_app, "redrive")
def dlq_redrive(
    refs: Annotated[list[str] | None, typer.Argument(help="PARTITION:OFFSET refs (see `dlq list`)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every record (matching --error) instead of refs")] = False,
    error: Annotated[str | None, typer.Option(help="only this error class")] = None,
    to_topic: Annotated[str | None, typer.Option(help="an existing topic; default: each record's source topic")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be re-driven, send nothing")] = False,
    config: ConfigOpt = None,
) -> None:
    """Produce dead-lettered records' original bytes back to their source topic."""
    from stream.ops.dlq import read_dlq, redrive, target_of

    if bool(refs) == all_:
        raise FraudstreamError("name the records to re-drive (PARTITION:OFFSET ...) or pass --all, not both")
    settings = settings_from(config)
    wanted = set(refs or [])
    letters = [
        d for d in read_dlq(settings.kafka) if (all_ or d.ref in wanted) and (not error or d.headers.get("error.class") == error)
    ]
    unknown = sorted(wanted - {d.ref for d in letters})
    if unknown:
        raise FraudstreamError(f"no DLQ record {', '.join(unknown)}" + (f" with error class {error}" if error else ""))
    if dry_run:
        for d in letters:
            console.print(f"{d.ref} {d.headers.get('error.class', '?')} -> {target_of(settings.kafka, d, to_topic)}")
        console.print(f"would re-drive {len(letters)} record(s) (dry run: nothing sent)")
        return
    console.print(f"re-drove {redrive(settings.kafka, letters, to_topic)} record(s)")


@command(app)
def backtest(
    start: FromOpt,
    out: Annotated[Path, typer.Option(help="folder for metrics.json and report.html")],
    end: ToOpt = None,
    model: Annotated[str, typer.Option(help="model version to replay the window through")] = "latest",
    lookback_days: Annotated[float, typer.Option(help="feature warm-up before --from (record time)")] = 35.0,
    labels: Annotated[Path | None, typer.Option(help="labels file instead of the labels topic")] = None,
    features: Annotated[
        str, typer.Option(help="auto: live's published features where there are, else rebuilt; live; rebuilt")
    ] = "auto",
    config: ConfigOpt = None,
) -> None:
    """What would MODEL have decided for a time range, how good is it, and how does it compare with live?"""
    from models.artifacts import load_bundle, resolve
    from models.errors import ArtifactError
    from stream.ops import backtest as bt
    from stream.ops.report import live_scores_for, render
    from stream.ops.timerange import parse_time

    if features not in ("auto", "live", "rebuilt"):
        raise typer.BadParameter(f"--features must be auto, live or rebuilt, not {features!r}")
    settings = settings_from(config)
    t1, t2 = parse_time(start), parse_time(end) if end else int(time.time() * 1000)
    bundle = load_bundle(resolve(settings.model.dir, model))
    with console.status("backtest") as status:
        data = bt.load(settings.kafka, t1, t2, lookback_days, labels, progress=lambda m: status.update(m))
        versions = sorted({d.model_version for d in data.live.values()})
        deployed = None
        if len(versions) == 1:
            try:
                deployed = load_bundle(resolve(settings.model.dir, versions[0])).thresholds
            except ArtifactError:
                deployed = None  # the deployed version is not in this model store: no line on the sweep
        status.update(f"scoring {len(data.window):,} transactions after {len(data.history):,} of warm-up")
        result = bt.run(
            bundle, data, pad_sizes=settings.deep.pad_sizes, features=cast(bt.FeatureSource, features), deployed=deployed
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    (out / "report.html").write_text(render(result, live_scores_for(result, data.live), f"Backtest of {bundle.version}"))
    m = result.metrics
    console.print(
        f"{m['window']['transactions']:,} transactions, {m['window']['frauds']} frauds; candidate {bundle.version}: "
        f"AP {m['candidate']['detection'].get('average_precision', float('nan')):.4f}, "
        f"caught {m['candidate']['fraud_caught']:.1%}"
    )
    f = m["features"]
    console.print(
        f"features: {f['scored_on_live_features']:,} as live published them, {f['scored_on_rebuilt_features']:,} rebuilt "
        f"after {m['range']['warm_up_transactions']:,} transactions of warm-up; "
        f"labels mature for {m['labels']['mature_share']:.1%} of the window"
    )
    if "comparison" in m:
        console.print(f"same decision as live: {m['comparison']['same_decision']:.2%} of {m['live']['decisions_found']:,}")
    for w in m["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(f"wrote {out / 'metrics.json'} and {out / 'report.html'}")


@command(app)
def replay(
    start: FromOpt,
    to_topic: Annotated[str, typer.Option(help="destination topic")],
    end: ToOpt = None,
    topic: Annotated[str | None, typer.Option(help="source topic (default: the transactions topic)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Re-publish a time range (keys, timestamps, headers kept): shadow runs, load tests."""
    from stream.kafka.topics import ensure_topics, topic_exists
    from stream.ops.replay import replay as run_replay
    from stream.ops.timerange import parse_time

    settings = settings_from(config)
    source = topic or settings.kafka.topics.transactions
    if not topic_exists(settings.kafka, source):
        raise FraudstreamError(f"source topic {source} does not exist; nothing replayed, {to_topic} not created")
    ensure_topics(settings.kafka, [to_topic])
    n = run_replay(settings.kafka, source, parse_time(start), parse_time(end) if end else None, to_topic)
    console.print(f"replayed {n:,} records into {to_topic}")


@command(app)
def explain(
    transaction_id: str,
    start: Annotated[str, typer.Option("--from", help="record time to search from")] = "0",
    end: ToOpt = None,
    lookback_days: float = 35.0,
    html_out: Annotated[Path | None, typer.Option("--html", help="write the audit view as HTML")] = None,
    config: ConfigOpt = None,
) -> None:
    """Exact explanations of one decision from the features it carries: TreeSHAP (XGBoost) and
    integrated gradients (MLP); exits 1 when a published score is not reproduced."""
    from stream.ops.explain import explain as run_explain
    from stream.ops.explain import require_reproduced, to_html
    from stream.ops.timerange import parse_time

    settings = settings_from(config)
    e = run_explain(
        settings.kafka, settings.model.dir, transaction_id, parse_time(start), parse_time(end) if end else None, lookback_days
    )
    d = e.decision
    console.print(f"{transaction_id}: {d.outcome.name} via {d.route.name} (model {d.model_version}, score {d.score:.4f})")
    console.print(f"features {e.source}")
    for check in e.checks:
        mark = "[green]same[/green]" if check.ok else "[red]DIFFERS[/red]"
        console.print(f"{check.name}: published {check.published:.6f}, recomputed {check.recomputed:.6f} {mark}")
    t = Table()
    for c in ("feature", "value", "XGBoost (TreeSHAP)", "MLP (integrated gradients)"):
        t.add_column(c)
    for f, v, a, b in e.rows():
        t.add_row(f, f"{v:.4g}", f"{a:+.4f}", f"{b:+.4f}" if e.deep else "-")
    console.print(t)
    console.print(f"XGBoost: bias {e.xgb.base:+.4f} + contributions = margin {e.xgb.output:+.4f}")
    if e.deep:
        console.print(f"MLP: baseline {e.deep.base:+.4f} + attributions = logit {e.deep.output:+.4f}")
    for w in e.warnings():
        console.print(f"[yellow]warning:[/yellow] {w}")
    if html_out:
        html_out.write_text(to_html(e))
    require_reproduced(e)


@command(app)
def shadow(
    model: Annotated[str, typer.Option(help="candidate version")],
    config: ConfigOpt = None,
    instance: Annotated[str, typer.Option()] = "0",
    exit_when_idle: Annotated[float | None, typer.Option()] = None,
) -> None:
    """A candidate decides what live decided, on the features live scored, into the shadow topic;
    real decisions and the live Redis state are untouched."""
    from models.artifacts import load_bundle, resolve
    from stream.kafka.lifecycle import StopFlag
    from stream.kafka.loop import StageLoop
    from stream.kafka.schema_registry import codec_for
    from stream.stages.shadow import ShadowScorer

    settings = settings_from(config)
    bundle = load_bundle(resolve(settings.model.dir, model))
    scorer = ShadowScorer(codec_for(settings.kafka), bundle, settings.kafka.topics, settings.deep.pad_sizes)
    group = f"fraudstream-shadow-{bundle.version}"
    loop = StageLoop(
        "shadow",
        settings.kafka,
        group,
        settings.kafka.topics.decisions,
        f"{group}-{instance}",
        settings.scorer.batch,
        scorer.process,
    )
    stop = StopFlag()
    stop.install()
    loop.run(stop, max_idle_s=exit_when_idle)
