"""Where stage 1's time goes, without Kafka: `Scorer.process` over the bench's transactions
at several batch sizes, against the local Redis (`make up`) and the demo model.

    python -m bench.profile [--sizes 1 4 12 50 500] [--records 20000]

For each size: wall time per batch and per transaction (no profiler attached), then the
same batches under cProfile, split by where the time was spent. cProfile adds a cost per
Python call, so the split over-weights Python-heavy parts (the feature engine, Avro in
Python) against time spent in C or waiting on Redis; it shows where to look, the wall
times show what it costs.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from typing import Any

import redis
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from bench.__main__ import Bench
from bench.staircase import in_process_scorer
from models.features import FeatureEngine
from stream.config import load_settings
from stream.state.featurestore import RedisFeatureStore

# (label, function as pstats names it: file suffix, function name), cumulative time each.
PARTS = (
    ("Avro decode of the input", ("stream/kafka/codec.py", "decode_messages")),
    ("Redis read (one script: claims and state)", ("stream/state/featurestore.py", "_claim_and_load")),
    ("feature engine", ("models/features.py", "transform")),
    ("Redis write (one script)", ("redis/commands/core.py", "evalsha")),
    ("XGBoost scores (or the numpy tree walk)", ("stream/stages/guards.py", "score")),
    ("XGBoost leaves of the band (big batches)", ("models/xgb.py", "leaves")),
    ("XGBoost reasons of flagged rows", ("models/xgb.py", "contributions")),
    ("Avro encode of the outputs", ("stream/kafka/codec.py", "encode")),
)


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
    per_size = len(records) // (2 * len(args.sizes))  # each size: fresh transactions, half timed, half profiled
    try:
        for n, size in enumerate(args.sizes):
            chunk = records[2 * n * per_size : 2 * (n + 1) * per_size]
            timed, profiled = chunk[: per_size // size * size], chunk[per_size : per_size + per_size // size * size]
            if not timed:
                continue
            t = time.perf_counter()
            for i in range(0, len(timed), size):
                scorer.process(timed[i : i + size])
            wall = time.perf_counter() - t
            prof = cProfile.Profile()
            prof.enable()
            for i in range(0, len(profiled), size):
                scorer.process(profiled[i : i + size])
            prof.disable()
            stats = pstats.Stats(prof)
            total = _cumulative(stats, "stream/stages/scorer.py", "process")
            batches = len(timed) // size
            print(f"\nbatch {size}: {wall / batches * 1000:.2f} ms per batch, {wall / len(timed) * 1e6:.1f} µs per transaction "
                  f"({batches} batches; split under cProfile)")  # fmt: skip
            shown = 0.0
            for label, (suffix, name) in PARTS:
                part = _cumulative(stats, suffix, name)
                shown += part
                print(f"  {label:<42} {part / total:6.1%}")
            print(f"  {'routing, records, metrics, the rest':<42} {max(total - shown, 0) / total:6.1%}")
            if args.top:
                stats.sort_stats("tottime").print_stats(args.top)
    finally:
        keys = [*client.scan_iter(match=f"fs:{namespace}:*", count=5000), f"hb:{namespace}:deep"]
        for i in range(0, len(keys), 5000):
            client.unlink(*keys[i : i + 5000])
        client.close()


if __name__ == "__main__":
    main()
