"""`make bench`: every figure from one run on this machine, ratios against baselines
measured in the same run. Prints a table and writes bench/results/bench-<time>.json.

    ceiling    pass-through consume → produce, same sizes/batching/transactions, no work
    staircase  stage 1's loop with its work added part by part (Avro, feature store, XGBoost)
    naive      one message per poll, a Redis round trip per read/update, one-row predict, commit each
    peers      stage 1's job in Quix Streams (exactly-once) and Bytewax (at-least-once): `bench.peer`
    stage 1    `fraudstream score` (exactly-once and at-least-once), stage 2 on CPU, whole pipeline
    latency    event produced → decision visible to a read_committed consumer, at fixed offered loads
    floor      the same latency run with the stages replaced by relays that do no work (`bench.relay`)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from bench import peer, relay
from bench.ceiling import run_ceiling
from bench.naive import run_naive
from bench.processes import cpu_seconds, server_pids
from bench.staircase import STEPS, run_step
from bench.staircase import table_rows as staircase_rows
from models.artifacts import load_bundle, resolve
from models.dataset import to_events, to_label_events
from models.features import FeatureEngine
from models.offline import OfflineFeatures
from models.simulator import SimConfig, simulate
from stream.config import Settings, load_settings
from stream.kafka.calls import produce
from stream.kafka.codec import Codec
from stream.kafka.topics import delete_topics, ensure_topics, pipeline_topics
from stream.ops.feed import Pacer
from stream.state.featurestore import RedisFeatureStore

RESULTS = Path(__file__).resolve().parent / "results"
T = TypeVar("T")
TOPIC_KEYS = ("transactions", "ambiguous", "decisions", "labels", "dlq", "shadow")


class Bench:
    def __init__(self, settings: Settings, n: int, run_id: str) -> None:
        self.base = settings
        self.n = n
        self.run_id = run_id
        self.codec = Codec()
        self.logs = RESULTS / f"logs-{run_id}"
        self.logs.mkdir(parents=True, exist_ok=True)
        sim = simulate(SimConfig(seed=0))
        tx = sim.transactions
        live = tx.iloc[-n:]
        cut = int(live["event_time"].min())
        history = tx[tx["event_time"] < cut]
        print(f"warming feature state from {len(history):,} transactions (offline, once)", flush=True)
        self.offline = OfflineFeatures(FeatureEngine())
        self.offline.run(to_events(history), to_label_events(sim.labels[sim.labels["label_time"] < cut]))
        self.events = to_events(live)
        self.values = [self.codec.encode("Transaction", {k: v for k, v in e.items() if k not in ("is_fraud", "scenario")})
                       for e in self.events]  # fmt: skip
        self.model_dir = resolve(settings.model.dir, settings.model.version).absolute()
        self.used: list[Settings] = []

    def cleanup(self) -> None:
        """Delete the topics and Redis keys of the phases run so far."""
        for s in self.used:
            delete_topics(s.kafka, [getattr(s.kafka.topics, k) for k in TOPIC_KEYS])
            client = redis.Redis.from_url(s.redis.url)
            for pattern in (f"fs:{s.redis.namespace}:*", f"hb:{s.redis.namespace}:*"):
                keys = list(client.scan_iter(match=pattern, count=5000))
                for i in range(0, len(keys), 5000):
                    client.unlink(*keys[i : i + 5000])
            client.close()
        self.used.clear()

    def env(self, tag: str, processing: str = "exactly_once") -> dict[str, str]:
        flow = "{" + ", ".join(f"{k}: bench.{self.run_id}.{tag}.{k}" for k in TOPIC_KEYS) + "}"
        return {**os.environ, "FRAUDSTREAM_KAFKA__TOPICS": flow, "FRAUDSTREAM_REDIS__NAMESPACE": f"bench-{self.run_id}-{tag}",
                "FRAUDSTREAM_MODEL__DIR": str(self.model_dir.parent), "FRAUDSTREAM_MODEL__VERSION": self.model_dir.name,
                "FRAUDSTREAM_KAFKA__PROCESSING": processing, "FRAUDSTREAM_LOG_FORMAT": "json",
                "FRAUDSTREAM_SCORER__GROUP_ID": f"bench-{self.run_id}-{tag}-scorer",
                "FRAUDSTREAM_SCORER__TRANSACTIONAL_ID_PREFIX": f"bench-{self.run_id}-{tag}-scorer",
                "FRAUDSTREAM_DEEP__GROUP_ID": f"bench-{self.run_id}-{tag}-deep",
                "FRAUDSTREAM_DEEP__TRANSACTIONAL_ID_PREFIX": f"bench-{self.run_id}-{tag}-deep"}  # fmt: skip

    def settings(self, env: dict[str, str], warm: bool = True) -> Settings:
        """A phase's settings; its topics are created and (`warm`) its Redis namespace warmed. The
        previous phase's topics and keys are removed first, so the broker and Redis do not
        carry every earlier phase's state (heap, page cache) into this one's figures."""
        self.cleanup()
        s = load_settings(environ=env)
        self.used.append(s)
        ensure_topics(s.kafka, pipeline_topics(s.kafka))
        if warm:
            client = redis.Redis.from_url(s.redis.url)
            RedisFeatureStore(client, s.redis.namespace, s.redis.ttl_days, FeatureEngine()).backfill(self.offline)
            client.close()
        return s

    def prefill(self, s: Settings, topic: str, times: int = 1) -> None:
        producer = Producer(s.kafka.producer_config(None))
        for e, v in [*zip(self.events, self.values, strict=True)] * times:
            while True:
                try:
                    producer.produce(topic, value=v, key=e["customer_id"].encode())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)

    def send(self, producer: Producer, topic: str, start: int, count: int, rate: float) -> None:
        """The load generator: records start..start+count at `rate` per second, paced about every
        millisecond; each is timestamped when produced. The records were encoded up front (as
        an upstream system on its own host would), so the generator's CPU on the shared cores
        is what producing costs, not encoding."""
        keys = [e["customer_id"].encode() for e in self.events[start : start + count]]
        pacer = Pacer(producer, rate)
        for i, (key, value) in enumerate(zip(keys, self.values[start : start + count], strict=True)):
            produce(producer, topic, value, key)
            pacer.sent(i)
        producer.flush(30)

    def service(self, kind: str, env: dict[str, str], tag: str, *extra: str, code: Path | None = None) -> subprocess.Popen[bytes]:
        """A stage as its own process; `code`: run another checkout's stages (A/B of two versions)."""
        if code is not None:
            env = {**env, "PYTHONPATH": str(code)}
        return self._spawn(["stream", kind, *extra], env, f"{tag}-{kind}", code)

    def relay(self, kind: str, env: dict[str, str], tag: str, share: float) -> subprocess.Popen[bytes]:
        """The relay standing in for stage `kind` ("score": the first, "deep": the second) in the latency floor."""
        which = "first" if kind == "score" else "second"
        return self._spawn(["bench.relay", which], {**env, relay.SHARE_ENV: str(share)}, f"{tag}-{kind}")

    def _spawn(
        self, module_args: list[str], env: dict[str, str], log_name: str, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{log_name}.log", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", *module_args], env=env, stdout=log, stderr=log, cwd=cwd)

    def stopped(self, kind: str, tag: str) -> dict[str, Any]:
        for line in (self.logs / f"{tag}-{kind}.log").read_text().splitlines():
            if '"stage_stopped"' in line:
                result: dict[str, Any] = json.loads(line)
                return result
        raise RuntimeError(f"{tag}-{kind} did not report; see {self.logs}")


def _wait_log(path: Path, event: str, timeout_s: float = 90) -> None:
    """Until the JSON log at `path` has `event` with a non-empty partition list."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines() if path.exists() else []:
            if event in line:
                rec = json.loads(line)
                if rec.get("event") == event and rec.get("partitions"):
                    return
        time.sleep(0.1)
    raise RuntimeError(f"{path} never logged {event}")


def warm_broker(b: Bench, out: dict[str, Any], min_s: float = 60.0, max_s: float = 150.0) -> None:
    """Pass-through rounds for at least min_s, until three in a row agree within 10 %: a
    freshly started broker runs interpreted code for its first minutes (JIT), and the
    figures are meant to be steady-state ones. The rates go to the results."""
    s = b.settings(b.env("warm"))
    b.prefill(s, s.kafka.topics.transactions, times=2)
    rates: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < max_s:
        n, secs = run_ceiling(s.kafka, s.kafka.topics.transactions, s.kafka.topics.decisions,
                              f"bench-{b.run_id}-warm-{len(rates)}", s.scorer.batch, 2 * b.n)  # fmt: skip
        rates.append(n / secs)
        last = rates[-3:]
        if time.monotonic() - started >= min_s and len(last) == 3 and max(last) <= 1.1 * min(last):
            break
    out["broker_warm_up_per_s"] = rates
    print(f"broker warm-up: {len(rates)} pass-through rounds, last {rates[-1]:,.0f}/s (first {rates[0]:,.0f}/s)", flush=True)


def throughput(b: Bench, out: dict[str, Any]) -> None:
    env = b.env("ceiling")
    s = b.settings(env)
    # Ten times the records: the pass-through is so fast that one copy lasts a fraction of a second.
    b.prefill(s, s.kafka.topics.transactions, times=10)
    n, secs = run_ceiling(s.kafka, s.kafka.topics.transactions, s.kafka.topics.decisions, f"bench-{b.run_id}-ceiling",
                          s.scorer.batch, 10 * b.n)  # fmt: skip
    out["ceiling"] = {"records": n, "seconds": secs, "per_s": n / secs}
    print(f"ceiling (pass-through, exactly-once): {n / secs:,.0f}/s", flush=True)

    env = b.env("naive")
    s = b.settings(env)
    b.prefill(s, s.kafka.topics.transactions)
    keys = RedisFeatureStore(redis.Redis.from_url(s.redis.url), s.redis.namespace, 40, FeatureEngine())
    booster = load_bundle(b.model_dir).booster
    n, secs = run_naive(s.kafka, s.kafka.topics.transactions, s.kafka.topics.decisions, f"bench-{b.run_id}-naive",
                        keys, booster, b.n, budget_s=20.0)  # fmt: skip
    out["naive"] = {"records": n, "seconds": secs, "per_s": n / secs}
    print(f"naive baseline: {n / secs:,.0f}/s", flush=True)

    peers(b, out)
    stage1(b, out, deep=True)
    staircase(b, out)


def peers(b: Bench, out: dict[str, Any]) -> None:
    """Each peer (`bench.peer`) over the same records, state starting empty as its store does."""
    if not peer.available():
        print("peers: skipped, no .venv-peer (bash bench/peer/setup.sh makes it)", flush=True)
        return
    for name, (_module, label, _mode) in peer.PEERS.items():
        env = b.env(f"peer-{name}")
        s = b.settings(env, warm=False)  # the peer keeps its state in its own store, and starts it empty
        b.prefill(s, s.kafka.topics.transactions)
        topics, state_dir, group = s.kafka.topics, b.logs / f"peer-{name}-state", f"bench-{b.run_id}-peer-{name}"
        run = partial(peer.run_peer, name, s.kafka.bootstrap, topics.transactions, topics.decisions, b.model_dir,
                      group, state_dir, b.logs / f"peer-{name}.log")  # fmt: skip
        rep, cpu = with_cpu(s, run)
        # The topics a peer made for itself (Quix's changelogs) carry its consumer group's name.
        delete_topics(s.kafka, [t for t in AdminClient(s.kafka.admin_config()).list_topics(timeout=10).topics if group in t])
        if rep["records"] != b.n:
            raise RuntimeError(f"peer {name} decided {rep['records']} of {b.n} records; see {b.logs / f'peer-{name}.log'}")
        out[f"peer_{name}"] = rep | {"cpu_us_per_record": cpu}
        print(f"peer ({label}): {rep['per_s']:,.0f}/s; CPU µs per record {cpu}", flush=True)


def stage1(b: Bench, out: dict[str, Any], deep: bool) -> None:
    """Stage 1 in both modes over the same records; `deep`: then stage 2 over what it buffered."""
    for processing, tag in (("exactly_once", "s1eos"), ("at_least_once", "s1alos")):
        env = b.env(tag, processing)
        s = b.settings(env)
        b.prefill(s, s.kafka.topics.transactions)
        # Stage 1 alone, doing its full work: the deep stage counts as up, so the band is
        # published to the buffer topic (leaves + ScoredTransaction) rather than decided here.
        store = RedisFeatureStore(redis.Redis.from_url(s.redis.url), s.redis.namespace, 40, FeatureEngine())
        store.heartbeat("deep", 3600)
        store.client.close()
        _, cpu = with_cpu(s, lambda: b.service("score", env, tag, "--exit-when-idle", "4").wait(600), per=b.n)  # noqa: B023
        rep = b.stopped("score", tag)
        out[f"stage1_{processing}"] = {"records": rep["records"], "seconds": rep["active_s"], "cpu_us_per_record": cpu,
                                      "per_s": rep["records"] / rep["active_s"], "peak_rss_mb": rep["peak_rss_mb"]}  # fmt: skip
        print(
            f"stage 1 ({processing}): {rep['records'] / rep['active_s']:,.0f}/s, peak RSS {rep['peak_rss_mb']:.0f} MB", flush=True
        )
        if deep and processing == "exactly_once":
            b.service("deep", env, tag, "--exit-when-idle", "4").wait(600)
            rep = b.stopped("deep", tag)
            out["stage2_cpu"] = {"records": rep["records"], "seconds": rep["active_s"],
                                 "per_s": rep["records"] / rep["active_s"], "peak_rss_mb": rep["peak_rss_mb"]}  # fmt: skip
            print(f"stage 2 on CPU: {rep['records'] / rep['active_s']:,.0f}/s, peak RSS {rep['peak_rss_mb']:.0f} MB", flush=True)


def staircase(b: Bench, out: dict[str, Any]) -> None:
    """Stage 1's work added step by step, in this process (`bench.staircase`)."""
    out["staircase"] = {}
    for step, label in STEPS:
        s = b.settings(b.env(f"step{step}"))
        b.prefill(s, s.kafka.topics.transactions)
        n, secs = run_step(step, s, b.n, f"bench-{b.run_id}-step{step}")
        out["staircase"][step] = {"records": n, "seconds": secs, "per_s": n / secs}
        print(f"step {label}: {n / secs:,.0f}/s", flush=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def with_cpu(s: Settings, run: Callable[[], T], per: int | None = None) -> tuple[T, dict[str, float]]:
    """`run()` (which starts a process and waits for it), and the CPU it cost per record in µs:
    that process's own and the broker's and Redis's over the same time (their idle share
    included: start-up and the idle exit are inside it). `per`: the records (default: the
    `records` field of what `run` returns)."""
    pids = server_pids(s.kafka.bootstrap, s.redis.url)
    before, child = {k: cpu_seconds(p) for k, p in pids.items()}, _children_cpu()
    result = run()
    used = {"process": _children_cpu() - child} | {k: cpu_seconds(p) - before[k] for k, p in pids.items()}
    n = per if per is not None else int(cast(dict[str, Any], result)["records"])
    cpu = {k: round(v / n * 1e6, 1) for k, v in used.items()}
    cpu["total"] = round(sum(cpu.values()), 1)
    return result, cpu


class DecisionReader(threading.Thread):
    """Reads decisions read_committed and records produced → visible latency per decision."""

    def __init__(self, s: Settings) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(s.kafka.consumer_config(f"reader-{time.time_ns()}"))
        self.consumer.subscribe([s.kafka.topics.decisions])
        self.latencies: list[float] = []
        self.received: list[float] = []
        self.routes: list[str] = []
        # Where each decision's time went: produced → decided (`decided_at`: in-stage features done),
        # decided → its record created (scoring, encoding), created → visible to this reader.
        self.parts: list[tuple[float, float, float]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.codec = Codec()

    def reset(self) -> None:
        """Forget what was read so far (the warm-up), keeping the series aligned."""
        with self.lock:
            for series in (self.latencies, self.received, self.routes, self.parts):
                series.clear()

    def run(self) -> None:
        while not self.stop.is_set():
            # consume(num, timeout) returns only once it has num records or the timeout is over, which
            # would add up to the timeout to every figure: wait for one record (it returns on arrival),
            # then take what else is already queued without waiting.
            msgs = self.consumer.consume(1, 0.1)
            if msgs:
                msgs += self.consumer.consume(1000, 0.0)
            for m in msgs:
                if m.error() is not None:
                    continue
                now_ms = time.time() * 1000
                d = self.codec.decode("Decision", m.value())
                produced_ms = d["decided_at"] - d["latency_ms"]
                created_ms = m.timestamp()[1]
                with self.lock:
                    self.latencies.append(now_ms - produced_ms)
                    self.received.append(now_ms)
                    self.routes.append(d["route"])
                    self.parts.append((d["latency_ms"], created_ms - d["decided_at"], now_ms - created_ms))
        self.consumer.close()


def pipeline(b: Bench, out: dict[str, Any], loads: list[int], seconds: float, modes: list[str]) -> None:
    for processing in modes:
        pipeline_max(b, out, processing)
        # One untimed round first: the broker compiles its transactional and small-fetch paths
        # only once traffic of this shape runs (in every series the first round was the slowest).
        latency(b, out, processing, loads[0], 4.0, warm_up=True)
        for load in loads:
            res = latency(b, out, processing, load, seconds)
            # The same path with no work, right after: what Kafka, the loop and this host cost now.
            latency(b, out, processing, load, seconds, variant=Variant("floor", relay_share=res.get("via_buffer", 0.0)))


def _short(processing: str) -> str:
    return "eos" if processing == "exactly_once" else "alos"


def pipeline_max(b: Bench, out: dict[str, Any], processing: str) -> None:
    """Max sustained: a pre-filled topic through both stages."""
    tag = f"pmax{_short(processing)}"
    env = b.env(tag, processing)
    s = b.settings(env)
    b.prefill(s, s.kafka.topics.transactions)
    reader = DecisionReader(s)
    reader.start()
    t0 = time.time() * 1000
    procs = [b.service("score", env, tag, "--exit-when-idle", "5"), b.service("deep", env, tag, "--exit-when-idle", "5")]
    for p in procs:
        p.wait(600)
    reader.stop.set()
    reader.join()
    rss = {k: b.stopped(k, tag)["peak_rss_mb"] for k in ("score", "deep")}
    n = len(reader.received)
    span = (max(reader.received) - min(reader.received)) / 1000 if n > 1 else float("nan")
    out[f"pipeline_max_{processing}"] = {"decisions": n, "seconds": span, "per_s": n / span, "peak_rss_mb": rss,
                                         "startup_s": (min(reader.received) - t0) / 1000 if n else None}  # fmt: skip
    print(f"pipeline max ({processing}): {n / span:,.0f} decisions/s; RSS {rss}", flush=True)


# Warms a namespace's feature state with the code of the checkout it runs in: its own offline
# features over the bench's history (the simulated transactions before the last N). Checkouts
# from before the feature modules moved keep them where they were then.
WARM = """
import sys, redis
from models.dataset import to_events, to_label_events
from models.simulator import SimConfig, simulate
import models, pathlib
if (pathlib.Path(models.__file__).parent / "offline.py").exists():
    from models.features import FeatureEngine
    from models.offline import OfflineFeatures
    from stream.state.featurestore import RedisFeatureStore
    engine = FeatureEngine
else:  # the checkout's own modules: an installed one may hold the newer ones too
    from models.features import FeatureEngine, OfflineFeatures
    from stream.featurestore import RedisFeatureStore
    engine = lambda: FeatureEngine(7)
url, n, namespace = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sim = simulate(SimConfig(seed=0))
cut = int(sim.transactions.iloc[-n:]["event_time"].min())
offline = OfflineFeatures(engine())
offline.run(to_events(sim.transactions[sim.transactions["event_time"] < cut]),
            to_label_events(sim.labels[sim.labels["label_time"] < cut]))
RedisFeatureStore(redis.Redis.from_url(url), namespace, 40, engine()).backfill(offline)
"""


def code_env(code: Path | None) -> dict[str, str]:
    """The environment that runs the checkout in `code` (None: this one)."""
    return {**os.environ, **({"PYTHONPATH": str(code)} if code else {})}


def warm_with_code(b: Bench, s: Settings, code: Path | None) -> None:
    """Warm s's Redis namespace as the checkout in `code` lays out its feature state."""
    subprocess.run([sys.executable, "-c", WARM, s.redis.url, str(b.n), s.redis.namespace],
                   env=code_env(code), cwd=code, check=True, timeout=900)  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """What an A/B round changes: settings through the environment, or another checkout's code."""

    name: str = ""
    env: dict[str, str] = field(default_factory=dict)
    code: Path | None = None
    relay_share: float | None = None  # set: the latency floor's relays (`bench.relay`), this share via the buffer


def latency(b: Bench, out: dict[str, Any], processing: str, load: int, seconds: float, warm_up: bool = False,
            variant: Variant = Variant(), run: str = "") -> dict[str, Any]:  # fmt: skip
    """End-to-end latency at a fixed offered load, both stages running (warm_up: print, do not count).
    Also each process's CPU (share of one core) over the measured traffic. `run` names a repeat
    of the same measurement: each repeat gets topics of its own (a topic deleted and made again
    under its name may still hold the last repeat's records)."""
    tag = f"p{load}{_short(processing)}{'warm' if warm_up else ''}{variant.name}{run}"
    env = {**b.env(tag, processing), **variant.env}
    share = variant.relay_share
    s = b.settings(env, warm=variant.code is None and share is None)
    if variant.code is not None:  # another checkout reads its own feature state's layout
        warm_with_code(b, s, variant.code)
    if share is not None:
        procs = [b.relay(kind, env, tag, share) for kind in ("score", "deep")]
    else:
        procs = [b.service(kind, env, tag, code=variant.code) for kind in ("score", "deep")]
    for kind in ("score", "deep"):
        _wait_log(b.logs / f"{tag}-{kind}.log", "partitions_assigned")
    time.sleep(1.5)  # the scorer sees the deep worker's heartbeat
    reader = DecisionReader(s)
    reader.start()
    # Warm-up: one second of traffic at the same rate, decided and then left out of the
    # figures (first transactions, first partitions of each transaction, caches).
    warm = int(load)
    count = min(int(load * seconds), len(b.events) - warm)
    # One producer for warm-up and measurement: a new idempotent producer holds its
    # first records until it has a producer id, which is the load generator's cost.
    feed = Producer(s.kafka.producer_config(None, client_id="bench-feed"))
    feed.list_topics(s.kafka.topics.transactions, timeout=10)  # connected before the first timestamp
    b.send(feed, s.kafka.topics.transactions, 0, warm, float(load))
    deadline = time.monotonic() + 30
    while len(reader.latencies) < warm and time.monotonic() < deadline:
        time.sleep(0.05)
    reader.reset()
    pids = {"score": procs[0].pid, "deep": procs[1].pid, "bench": os.getpid()} | server_pids(s.kafka.bootstrap, s.redis.url)
    cpu_before, t0 = {k: cpu_seconds(pid) for k, pid in pids.items()}, time.monotonic()
    b.send(feed, s.kafka.topics.transactions, warm, count, float(load))
    # Sustained: everything decided within 2 s of the last send (no growing queue).
    sustained_by = time.monotonic() + 2.0
    deadline = time.monotonic() + 30
    while len(reader.latencies) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    sustained = len(reader.latencies) >= count and time.monotonic() <= sustained_by
    elapsed = time.monotonic() - t0
    cpu = {k: round((cpu_seconds(pid) - cpu_before[k]) / elapsed, 3) for k, pid in pids.items()}
    reader.stop.set()
    reader.join()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(60)
    lat = np.array(reader.latencies)
    if len(lat) > count:  # a latency figure over records it did not send is no figure
        raise RuntimeError(f"{len(lat):,} decisions read for {count:,} transactions sent ({tag}): a stale topic or "
                           "duplicated decisions; see the stage logs in " + str(b.logs))  # fmt: skip
    series = {"latency_ms": reader.latencies, "received_ms": reader.received, "route": reader.routes,
              "to_decided_ms": [p[0] for p in reader.parts], "to_created_ms": [p[1] for p in reader.parts],
              "to_visible_ms": [p[2] for p in reader.parts]}  # fmt: skip
    (b.logs / f"{tag}-latency.json").write_text(json.dumps(series))
    res: dict[str, Any] = {"offered_per_s": load, "sent": count, "decided": len(lat), "sustained": sustained,
           "warm_up_records_excluded": warm}  # fmt: skip
    if len(lat):
        res |= {f"p{q}": float(np.percentile(lat, q)) for q in (50, 99, 99.9)}
        # Where the tail comes from: decided in stage 1, or through the buffer and stage 2.
        routes = np.array(reader.routes[: len(lat)])
        for name in sorted(set(routes.tolist())):
            res[f"p99_{name}"] = float(np.percentile(lat[routes == name], 99))
        res["via_buffer"] = float(np.mean(routes == "DEEP"))  # the share the floor sends the same way
    res["cpu_share"] = cpu
    if not warm_up:
        out[f"latency_{processing}_{load}{'' if share is None else '_floor'}"] = res
    figures = ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items())
    what = "latency" if share is None else "latency floor (relays, no work)"
    print(f"{'untimed warm-up round, not counted: ' if warm_up else ''}{what} {processing} @ {load}/s: {figures}", flush=True)
    return res


def gpu(out: dict[str, Any]) -> None:
    """Stage 2's model: on the CPU always, on CUDA when there is a GPU (`bench.gpu`)."""
    from bench.gpu import run_gpu
    from bench.gpu import table as gpu_table

    out["gpu"] = run_gpu()
    print(gpu_table(out["gpu"]))


def table(out: dict[str, Any]) -> str:
    rows = [("measure", "value")]
    s1 = out.get("stage1_exactly_once", {}).get("per_s")
    if "ceiling" in out:
        c, nv = out["ceiling"]["per_s"], out["naive"]["per_s"]
        rows += [("ceiling: pass-through, exactly-once", f"{c:,.0f} records/s"), ("baseline: naive consumer", f"{nv:,.0f} tx/s")]
    if s1 is not None:
        rows += [("stage 1, exactly-once", f"{s1:,.0f} tx/s"),
                 ("stage 1, at-least-once", f"{out['stage1_at_least_once']['per_s']:,.0f} tx/s")]  # fmt: skip
    if "ceiling" in out and s1 is not None:
        rows += [
            ("stage 1 / naive", f"{s1 / out['naive']['per_s']:.1f}x"),
            ("stage 1 / ceiling", f"{s1 / out['ceiling']['per_s']:.0%}"),
        ]
    if s1 is not None:
        rows += peer_rows(out)
    if "staircase" in out:
        rows += [("stage 1's work added step by step, in this process:", ""), *staircase_rows(out)]
    if "stage2_cpu" in out:
        rows += [
            ("stage 2 on CPU", f"{out['stage2_cpu']['per_s']:,.0f} rows/s"),
            (
                "peak RSS stage 1 / stage 2",
                f"{out['stage1_exactly_once']['peak_rss_mb']:.0f} MB / {out['stage2_cpu']['peak_rss_mb']:.0f} MB",
            ),
        ]
    for mode in ("exactly_once", "at_least_once"):
        if f"pipeline_max_{mode}" in out:
            label = mode.replace("_", "-")
            rows.append((f"whole pipeline, {label}", f"{out[f'pipeline_max_{mode}']['per_s']:,.0f} decisions/s"))
    for k, v in out.items():
        if k.startswith("latency_") and not k.endswith("_floor") and "p99" in v:
            mode = "exactly-once" if "exactly" in k else "at-least-once"
            flag = "" if v["sustained"] else " (not sustained)"
            rows.append((f"end-to-end @ {v['offered_per_s']:,}/s, {mode}",
                         f"p50 {v['p50']:.0f} ms, p99 {v['p99']:.0f} ms, p99.9 {v['p99.9']:.0f} ms{flag}"))  # fmt: skip
            floor = out.get(f"{k}_floor", {})
            if "p99" in floor:
                above = v["p99"] - floor["p99"]
                rows.append((f"  floor (same path, no work; {v['via_buffer']:.0%} via the buffer) / p99 above it",
                             f"p50 {floor['p50']:.0f} ms, p99 {floor['p99']:.0f} ms / {above:.0f} ms"))  # fmt: skip
    w = max(len(r[0]) for r in rows)
    lines = [f"| {a.ljust(w)} | {b} |" for a, b in rows]
    lines.insert(1, f"|{'-' * (w + 2)}|---|")
    return "\n".join(lines)


def peer_rows(out: dict[str, Any]) -> list[tuple[str, str]]:
    """Each peer against stage 1 in the mode of its guarantee: rate, ratio, CPU per transaction."""
    rows = []
    for name, (_module, label, mode) in peer.PEERS.items():
        if f"peer_{name}" not in out:
            rows.append((f"peer: {label}", "not run (no .venv-peer)"))
            continue
        p, s1 = out[f"peer_{name}"], out[f"stage1_{mode}"]
        rows += [(f"peer: {label}", f"{p['per_s']:,.0f} tx/s"),
                 (f"stage 1 {mode.replace('_', '-')} / {name}", f"{s1['per_s'] / p['per_s']:.1f}x"),
                 (f"CPU µs per transaction, stage 1 / {name} (process + broker + Redis)",
                  f"{s1['cpu_us_per_record']['total']:,.0f} / {p['cpu_us_per_record']['total']:,.0f}")]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--loads", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--seconds", type=float, default=8.0, help="per fixed-load run")
    parser.add_argument("--parts", nargs="+", choices=("throughput", "peers", "pipeline", "gpu"),
                        default=["throughput", "pipeline", "gpu"],
                        help="what to measure (default: everything; peers: the peers and stage 1 alone)")  # fmt: skip
    parser.add_argument("--modes", nargs="+", choices=("exactly_once", "at_least_once"),
                        default=["exactly_once", "at_least_once"], help="processing modes of the pipeline runs")  # fmt: skip
    args = parser.parse_args()
    run_id = time.strftime("%Y%m%d%H%M%S")
    settings = load_settings()
    from rich.console import Console

    from stream.ops.demo import ensure_model

    ensure_model(settings, Console())
    b = Bench(settings, args.records, run_id)
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                       "python": platform.python_version()}, "records": args.records,
                           "overrides": overrides(os.environ)}  # fmt: skip
    if {"throughput", "peers", "pipeline"} & set(args.parts):
        warm_broker(b, out)
    if "throughput" in args.parts:
        throughput(b, out)
    elif "peers" in args.parts:
        peers(b, out)
        stage1(b, out, deep=False)
    if "pipeline" in args.parts:
        pipeline(b, out, args.loads, args.seconds, args.modes)
    b.cleanup()
    if "gpu" in args.parts:
        gpu(out)
    text = table(out)
    print(text)
    write_results("bench", run_id, out)


def overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings a run changed through the environment (empty: the defaults); passwords and
    URLs carrying credentials masked."""
    return {k: "***" if "PASSWORD" in k or "@" in v else v for k, v in sorted(environ.items()) if k.startswith("FRAUDSTREAM_")}


def write_results(kind: str, run_id: str, out: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{kind}-{run_id}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"written {path}")
    return path


if __name__ == "__main__":
    main()
