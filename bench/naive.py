"""The baseline: a consumer as a tutorial would write it.

One message per poll, a Redis round trip per feature read and update, XGBoost on
one row, produce, commit — over the same data and the same feature definitions.
"""

from __future__ import annotations

import time
from typing import cast

import xgboost as xgb
from confluent_kafka import Consumer, Producer

from models.card import CARD_BYTES, append, card_from_bytes, empty_card
from models.features import FeatureEngine
from models.featureset import RING_DAYS, TX, ring_add, ring_from_bytes
from models.units import DAY_MS
from stream.config import KafkaSettings
from stream.kafka.codec import Codec
from stream.state.featurestore import RedisFeatureStore


def run_naive(kafka: KafkaSettings, topic: str, out_topic: str, group: str, keys: RedisFeatureStore,
              booster: xgb.Booster, n: int, budget_s: float) -> tuple[int, float]:  # fmt: skip
    """Process up to n records or until budget_s; returns (records, seconds)."""
    codec = Codec()
    engine = FeatureEngine()
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
            blob = cast(bytes | None, r.get(ckey))  # round trip 1
            card = card_from_bytes(blob) if blob and len(blob) == CARD_BYTES else empty_card()
            ring = ring_from_bytes(cast(bytes | None, r.get(tkey)))  # round trip 2
            result = engine.transform([tx], {tx["customer_id"]: card}, {tx["terminal_id"]: ring})
            row = result.features[0]
            for records in result.appended.values():
                append(card, records)
                r.set(ckey, card.tobytes())  # round trip 3
                day = int(tx["event_time"]) // DAY_MS
                ring_add(ring, day, TX, 1)
                r.setrange(tkey, (day % RING_DAYS) * 12, ring[day % RING_DAYS].tobytes())  # round trip 4
            p = float(booster.predict(xgb.DMatrix(row[None, :]))[0])
            producer.produce(out_topic, value=f"{tx['transaction_id']}:{p:.6f}".encode(), key=tx["transaction_id"].encode())
            producer.flush()
            consumer.commit(message=msg, asynchronous=False)
            done += 1
            if time.perf_counter() - started > budget_s:
                break
    finally:
        consumer.close()
    return done, (time.perf_counter() - started) if started else 0.0
