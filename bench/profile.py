"""Where stage 1's time goes, without Kafka: `Scorer.process` over the bench's transactions
at several batch sizes, against the local Redis (`make up`) and the demo model.

    python -m bench.profile [--sizes 1 4 12 50 500] [--records 20000]

For each size: wall time per batch and per transaction (no profiler attached); the same
batches again with a clock around each part (`TIMED`: one wrapper call per part call, the
split of wall time); then under cProfile, split the same way. cProfile adds a cost per
Python call, so its split over-weights Python-heavy parts (the feature engine, Avro in
Python) against time spent in C or waiting on Redis; the clocked split is the one to read
for what a part costs, cProfile's `--top` for where inside it to look.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from bench.__main__ import Bench
from bench.staircase import in_process_scorer
from models import xgb as xgbm
from models.features import FeatureEngine
from stream.config import load_settings
from stream.kafka.codec import Codec
from stream.stages.guards import GuardedXGBoost
from stream.state.featurestore import RedisFeatureStore
from stream.state.pending import PendingScript

# (label, function as pstats names it: file suffix, function name), cumulative time each.
PARTS = (
    ("Avro decode of the input", ("stream/kafka/codec.py", "decode_messages")),
    ("Redis read (claims script + MGET, one MULTI/EXEC)", ("stream/state/featurestore.py", "_claim_and_load")),
    ("feature engine", ("models/features.py", "transform")),
    ("Redis write: build and send the script call", ("stream/state/featurestore.py", "_write_state")),
    ("Redis write: wait for its reply (later)", ("stream/state/pending.py", "wait")),
    ("XGBoost scores (or the numpy tree walk)", ("stream/stages/guards.py", "score")),
    ("XGBoost leaves of the band (big batches)", ("models/xgb.py", "leaves")),
    ("XGBoost reasons of flagged rows", ("models/xgb.py", "contributions")),
    ("Avro encode of the buffer records (columns)", ("stream/kafka/codec.py", "encode_buffers")),
    ("Avro encode of the decisions (columns)", ("stream/kafka/codec.py", "encode_decisions")),
)
# The same parts as (owner, attribute) to clock: wrapped for the clocked pass, then restored.
TIMED = (
    (Codec, "decode_messages"),
    (RedisFeatureStore, "_claim_and_load"),
    (FeatureEngine, "transform"),
    (RedisFeatureStore, "_write_state"),
    (PendingScript, "wait"),
    (GuardedXGBoost, "score"),
    (xgbm, "leaves"),
    (xgbm, "contributions"),
    (Codec, "encode_buffers"),
    (Codec, "encode_decisions"),
)


@contextmanager
def clocked() -> Iterator[list[float]]:
    """While open, each TIMED part adds its wall seconds to its slot (an outer call only)."""
    spent, saved = [0.0] * len(TIMED), [getattr(owner, name) for owner, name in TIMED]

    def wrap(k: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[k] += time.perf_counter() - t

        return timed

    for k, (owner, name) in enumerate(TIMED):
        setattr(owner, name, wrap(k, saved[k]))
    try:
        yield spent
    finally:
        for (owner, name), fn in zip(TIMED, saved, strict=True):
            setattr(owner, name, fn)


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    return float(sum(v[3] for (file, _line, func), v in raw.items() if func == name and file.endswith(suffix)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 12, 50, 500])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with the most own time")
    args = parser.parse_args()
    namespace = f"bench-profile-{os.getpid()}"
    settings = load_settings(environ={**os.environ, "FRAUDSTREAM_REDIS__NAMESPACE": namespace})
    b = Bench(settings, args.records, f"profile-{os.getpid()}")
    client = redis.Redis.from_url(settings.redis.url)
    store = RedisFeatureStore(client, namespace, settings.redis.ttl_days, FeatureEngine())
    store.backfill(b.offline)
    store.heartbeat("deep", 3600)  # the band goes to the buffer topic, as with the deep stage up
    scorer = in_process_scorer(settings, store)
    now = (TIMESTAMP_CREATE_TIME, int(time.time() * 1000))
    records = [Message(topic="bench.profile.transactions", partition=0, offset=i, key=e["customer_id"].encode(), value=v,
                       timestamp=now) for i, (e, v) in enumerate(zip(b.events, b.values, strict=True))]  # fmt: skip
    # The bench's history (hundreds of thousands of dicts) is no part of a scorer's heap: kept out
    # of the garbage collector's passes, which would otherwise bill their walks to the batches.
    gc.freeze()
    per_size = len(records) // (3 * len(args.sizes))  # each size: fresh transactions, a third per pass
    try:
        for n, size in enumerate(args.sizes):
            chunk = records[3 * n * per_size : 3 * (n + 1) * per_size]
            usable = per_size // size * size
            timed, split, profiled = (chunk[k * per_size : k * per_size + usable] for k in range(3))
            if not timed:
                continue
            t = time.perf_counter()
            for i in range(0, len(timed), size):
                scorer.process(timed[i : i + size])
            wall = time.perf_counter() - t
            with clocked() as spent:
                t = time.perf_counter()
                for i in range(0, len(split), size):
                    scorer.process(split[i : i + size])
                clocked_wall = time.perf_counter() - t
            prof = cProfile.Profile()
            prof.enable()
            for i in range(0, len(profiled), size):
                scorer.process(profiled[i : i + size])
            prof.disable()
            stats = pstats.Stats(prof)
            total = _cumulative(stats, "stream/stages/scorer.py", "process")
            batches = len(timed) // size
            print(f"\nbatch {size}: {wall / batches * 1000:.2f} ms per batch, {wall / len(timed) * 1e6:.1f} µs per transaction "
                  f"({batches} batches); split by clock ({clocked_wall / batches * 1000:.2f} ms per batch) "
                  "| under cProfile")  # fmt: skip
            shown = shown_clock = 0.0
            for (label, (suffix, name)), by_clock in zip(PARTS, spent, strict=True):
                part = _cumulative(stats, suffix, name)
                shown, shown_clock = shown + part, shown_clock + by_clock
                print(f"  {label:<50} {by_clock / clocked_wall:6.1%} | {part / total:6.1%}")
            rest, rest_clock = max(total - shown, 0) / total, max(clocked_wall - shown_clock, 0) / clocked_wall
            print(f"  {'routing, records, metrics, the rest':<50} {rest_clock:6.1%} | {rest:6.1%}")
            if args.top:
                stats.sort_stats("tottime").print_stats(args.top)
    finally:
        keys = [*client.scan_iter(match=f"fs:{namespace}:*", count=5000), f"hb:{namespace}:deep"]
        for i in range(0, len(keys), 5000):
            client.unlink(*keys[i : i + 5000])
        client.close()


if __name__ == "__main__":
    main()
