"""The baseline: a consumer as a tutorial would write it.

One message per poll, a Redis round trip per feature read and update, XGBoost on
one row, produce, commit — over the same data and the same feature definitions.
"""

from __future__ import annotations

import time

import numpy as np
import xgboost as xgb
from confluent_kafka import Consumer, Producer

from models.features import FEATURE_NAMES, HISTORY_DTYPE, FeatureEngine, TerminalState
from stream.codec import Codec
from stream.config import KafkaSettings
from stream.featurestore import RedisFeatureStore


def run_naive(kafka: KafkaSettings, topic: str, out_topic: str, group: str, keys: RedisFeatureStore,
              booster: xgb.Booster, n: int, budget_s: float) -> tuple[int, float]:  # fmt: skip
    """Process up to n records or until budget_s; returns (records, seconds)."""
    codec = Codec()
    engine = FeatureEngine(7)
    r = keys.client
    consumer = Consumer(kafka.consumer_config(group))
    producer = Producer(kafka.producer_config(None))
    consumer.subscribe([topic])
    done = 0
    started: float | None = None
    try:
        while done < n:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                if started is not None and time.perf_counter() - started > budget_s:
                    break
                continue
            if started is None:
                started = time.perf_counter()
            tx = codec.decode("Transaction", msg.value())
            ckey, tkey = keys.customer_key(tx["customer_id"]), keys.terminal_key(tx["terminal_id"])
            blob = r.get(ckey)  # round trip 1
            hist = np.frombuffer(blob, dtype=HISTORY_DTYPE).copy() if blob else np.zeros(0, HISTORY_DTYPE)
            counts = r.hgetall(tkey)  # round trip 2
            state = TerminalState()
            for k, v in counts.items():
                kind, _, day = k.decode().partition(":")
                (state.tx if kind == "n" else state.fraud)[int(day)] = int(v)
            row = np.full(len(FEATURE_NAMES), np.nan, dtype=np.float64)
            engine.event_only(tx, row)
            new, _ = engine.customer(hist, tx, row)
            engine.terminal(state, int(tx["event_time"]), row)
            if new is not None:
                r.set(ckey, new.tobytes())  # round trip 3
                r.hincrby(tkey, f"n:{int(tx['event_time']) // 86_400_000}", 1)  # round trip 4
            p = float(booster.predict(xgb.DMatrix(row[None, :].astype(np.float32)))[0])
            producer.produce(out_topic, value=f"{tx['transaction_id']}:{p:.6f}".encode(), key=tx["transaction_id"].encode())
            producer.flush()
            consumer.commit(message=msg, asynchronous=False)
            done += 1
            if time.perf_counter() - started > budget_s:
                break
    finally:
        consumer.close()
    return done, (time.perf_counter() - started) if started else 0.0
