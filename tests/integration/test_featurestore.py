"""The Redis feature store against a real Redis: parity with the in-memory backend,
idempotent re-delivery, labels counted once."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
import redis

from models.dataset import to_events, to_label_events
from models.features import FeatureEngine, OfflineFeatures
from models.featureset import ring_counts, ring_from_bytes
from models.simulator import SimConfig, simulate
from stream.state.featurestore import RedisFeatureStore
from stream.testing import LocalInfra

pytestmark = pytest.mark.integration


def test_online_equals_offline_with_labels_and_redelivery(infra: LocalInfra, uid: str) -> None:
    sim = simulate(SimConfig(n_customers=150, n_terminals=40, days=20, seed=5))
    events = to_events(sim.transactions)
    labels = to_label_events(sim.labels)
    client = redis.Redis.from_url(infra.redis_url)
    store = RedisFeatureStore(client, uid, 40, FeatureEngine(7))
    online, li = [], 0
    for start in range(0, len(events), 300):
        chunk = events[start : start + 300]
        # Labels reach Redis through the label consumer once their label time has passed.
        due = []
        while li < len(labels) and labels[li]["label_time"] <= chunk[0]["event_time"]:
            due.append(labels[li])
            li += 1
        store.apply_labels(due)
        store.apply_labels(due)  # a re-delivered label batch counts nothing twice
        online.append(store.features(chunk).features)
        if start == 900:
            again = store.features(chunk).features  # a re-delivered batch: same features, nothing counted twice
            np.testing.assert_array_equal(again, online[-1])
    offline = OfflineFeatures(FeatureEngine(7)).run(events, labels, batch=300)
    np.testing.assert_array_equal(np.concatenate(online), offline)
    ring = ring_from_bytes(cast(bytes | None, client.get(store.terminal_key(labels[0]["terminal_id"]))))
    assert any(frauds for _, frauds in ring_counts(ring).values())
    client.close()


def test_a_transaction_id_claimed_by_one_record_is_a_repeat_under_any_customer(infra: LocalInfra, uid: str) -> None:
    from stream.testing import sample_transaction

    client = redis.Redis.from_url(infra.redis_url)
    store = RedisFeatureStore(client, uid, 40, FeatureEngine(7))
    first = [sample_transaction(i) for i in range(4)]
    first_src = [1000 + i for i in range(4)]
    assert not store.features(first, first_src).repeats.any()
    # The same record again (a batch redone after an abort) keeps its claim: no repeat.
    assert not store.features(first, first_src).repeats.any()
    history = client.get(store.customer_key(first[0]["customer_id"]))
    # The same ids from other records, under other customers: repeats, and the state is untouched.
    other = [{**e, "customer_id": f"other-{i}"} for i, e in enumerate(first[:2])] + [sample_transaction(99)]
    result = store.features(other, [2000, 2001, 3000])
    assert result.repeats.tolist() == [True, True, False]
    assert np.isnan(result.features[:2]).all() and not np.isnan(result.features[2]).all()
    assert client.get(store.customer_key("other-0")) is None
    assert client.get(store.customer_key(first[0]["customer_id"])) == history
    client.close()
