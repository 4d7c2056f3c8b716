"""The Redis feature store against a real Redis — one server, a TLS-only server with an ACL
user, and a Redis Cluster — parity with the in-memory backend, idempotent re-delivery, labels
counted once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import redis

from models.dataset import to_events, to_label_events
from models.features import FeatureEngine
from models.featureset import HISTORY_DTYPE, RING_RECORDS, ring_counts, ring_from_bytes
from models.offline import OfflineFeatures
from models.simulator import SimConfig, simulate
from stream.config import load_settings
from stream.state.connection import Client, redis_client
from stream.state.featurestore import RedisFeatureStore
from stream.testing import LocalInfra, redis_cluster, secured_infra

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["single", "secured", "cluster"])
def redis_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Settings for each shape of Redis the store runs on, each started by deploy/local/infra.sh."""
    if request.param == "single":
        infra: LocalInfra = request.getfixturevalue("infra")
        yield {"FRAUDSTREAM_REDIS_URL": infra.redis_url}
    elif request.param == "secured":
        with secured_infra(tmp_path_factory.mktemp("secured"), "redis") as secured:
            yield secured.redis_env()
    else:
        with redis_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
            yield {"FRAUDSTREAM_REDIS_URL": cluster.url, "FRAUDSTREAM_REDIS__CLUSTER": "true"}


def _client(env: dict[str, str]) -> Client:
    return redis_client(load_settings(environ=env).redis)


def test_online_equals_offline_with_labels_and_redelivery(redis_env: dict[str, str], uid: str) -> None:
    sim = simulate(SimConfig(n_customers=150, n_terminals=40, days=20, seed=5))
    events = to_events(sim.transactions)
    labels = to_label_events(sim.labels)
    client = _client(redis_env)
    store = RedisFeatureStore(client, uid, 40, FeatureEngine(7))
    assert store.cluster == ("FRAUDSTREAM_REDIS__CLUSTER" in redis_env)
    online, online_seq, li = [], [], 0
    for start in range(0, len(events), 300):
        chunk = events[start : start + 300]
        # Labels reach Redis through the label consumer once their label time has passed.
        due = []
        while li < len(labels) and labels[li]["label_time"] <= chunk[0]["event_time"]:
            due.append(labels[li])
            li += 1
        store.apply_labels(due)
        store.apply_labels(due)  # a re-delivered label batch counts nothing twice
        result = store.features(chunk)
        online.append(result.features)
        online_seq.append(result.sequences)
        if start == 900:
            again = store.features(chunk)  # a re-delivered batch: same features and sequences, nothing counted twice
            np.testing.assert_array_equal(again.features, online[-1])
            np.testing.assert_array_equal(again.sequences, online_seq[-1])
    offline_state = OfflineFeatures(FeatureEngine(7))
    offline = offline_state.rows(events, labels, batch=300)
    np.testing.assert_array_equal(np.concatenate(online), offline.x)
    np.testing.assert_array_equal(np.concatenate(online_seq), offline.seq)  # the deep stage's input, bit for bit
    # The write script and models.card.append leave the same bytes, records that left the ring included.
    cards, _ = store.load(list(offline_state.customers), [])
    assert {c: k.tobytes() for c, k in cards.items()} == {c: k.tobytes() for c, k in offline_state.customers.items()}
    assert max(int(k["seq"][0]) for k in cards.values()) > 2 * RING_RECORDS
    ring = ring_from_bytes(cast(bytes | None, client.get(store.terminal_key(labels[0]["terminal_id"]))))
    assert any(frauds for _, frauds in ring_counts(ring).values())
    client.close()


def test_a_transaction_id_claimed_by_one_record_is_a_repeat_under_any_customer(redis_env: dict[str, str], uid: str) -> None:
    from stream.testing import sample_transaction

    client = _client(redis_env)
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


def test_a_secured_redis_refuses_plaintext_the_default_user_and_a_wrong_password(tmp_path: Path) -> None:
    with secured_infra(tmp_path / "run", "redis") as secured:
        env = secured.redis_env()
        port = int(secured.redis_url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=port, socket_timeout=2).ping()  # plaintext to a TLS-only port
        for wrong in ({"FRAUDSTREAM_REDIS__PASSWORD": "not-it"}, {"FRAUDSTREAM_REDIS__USERNAME": "default"}):
            with pytest.raises(redis.AuthenticationError):
                _client(env | wrong).ping()
        assert _client(env).acl_whoami() == "fraudstream"


def test_the_cluster_store_keeps_its_scripts_when_a_node_forgets_them(tmp_path: Path, uid: str) -> None:
    """A promoted replica may not hold the scripts: the store loads them again and sends
    only the calls that were refused, so nothing is counted twice."""
    from stream.testing import sample_transaction

    with redis_cluster(tmp_path / "run") as cluster:
        client = _client({"FRAUDSTREAM_REDIS_URL": cluster.url, "FRAUDSTREAM_REDIS__CLUSTER": "true"})
        store = RedisFeatureStore(client, uid, 40, FeatureEngine(7))
        store.warm_up()
        events = [sample_transaction(i) for i in range(60)]
        store.features(events[:30])
        for port in cluster.primary_ports():
            redis.Redis(port=port).script_flush()
        store.features(events[30:])
        offline = OfflineFeatures(FeatureEngine(7))
        offline.run(events, [], batch=30)
        customers, terminals = store.load(list(offline.customers), list(offline.terminals))
        assert {c: h.tobytes() for c, h in customers.items()} == {c: h.tobytes() for c, h in offline.customers.items()}
        assert {t: r.tobytes() for t, r in terminals.items()} == {t: r.tobytes() for t, r in offline.terminals.items()}


def test_a_single_primary_that_forgot_the_scripts_gets_them_again(infra: LocalInfra, uid: str) -> None:
    """A restarted Redis holds no scripts: the claims (sent in a MULTI/EXEC with the read) and
    the write are loaded again, and the batch counts once, its claims kept."""
    from stream.testing import sample_transaction

    client = _client({"FRAUDSTREAM_REDIS_URL": infra.redis_url})
    store = RedisFeatureStore(client, uid, 40, FeatureEngine(7))
    store.warm_up()
    events = [sample_transaction(i) for i in range(60)]
    twin = RedisFeatureStore(client, f"{uid}-twin", 40, FeatureEngine(7))  # the same calls, scripts kept
    for s in (store, twin):
        s.features(events[:30], list(range(1, 31)))
        if s is store:
            client.script_flush()
        assert not s.features(events[30:], list(range(31, 61))).repeats.any()
    client.script_flush()
    assert store.features(events[:2], [900, 901]).repeats.all()  # the ids' claims survived: repeats
    cids, tids = list(dict.fromkeys(e["customer_id"] for e in events)), list(dict.fromkeys(e["terminal_id"] for e in events))
    (customers, terminals), (want_c, want_t) = store.load(cids, tids), twin.load(cids, tids)
    assert {c: h.tobytes() for c, h in customers.items()} == {c: h.tobytes() for c, h in want_c.items()}
    assert {t: r.tobytes() for t, r in terminals.items()} == {t: r.tobytes() for t, r in want_t.items()} != {}
    client.close()


def test_a_write_refused_by_redis_fails_at_its_acknowledgement_and_leaves_the_connection_usable(
    infra: LocalInfra, uid: str
) -> None:
    """The batch's write is sent with the features and answered later: an error reply (a card
    key of another type) surfaces when the scorer acknowledges it, not before; the next batch
    runs on a fresh connection, with the records' claims kept."""
    from stream.errors import FeatureStoreError
    from stream.testing import sample_transaction

    client = _client({"FRAUDSTREAM_REDIS_URL": infra.redis_url})
    store = RedisFeatureStore(client, uid, 40, FeatureEngine(7))
    store.warm_up()
    events = [sample_transaction(i) for i in range(30)]
    blocker = store.customer_key(events[0]["customer_id"])
    client.hset(blocker, "not", "a card")
    staged = store.stage(events, list(range(1, 31)))
    assert staged.features.features.shape[0] == 30 and not staged.features.repeats.any()
    with pytest.raises(FeatureStoreError, match=r"feature update failed.*WRONGTYPE"):
        staged.acknowledge()
    client.delete(blocker)
    again = store.features(events, list(range(1, 31)))  # the same records: their claims hold
    assert not again.repeats.any()
    np.testing.assert_array_equal(again.features, staged.features.features)
    client.close()


def test_migration_builds_each_fs1_history_into_the_card_fs2_would_have_built(infra: LocalInfra, uid: str) -> None:
    from models.card import card_from_bytes
    from stream.state.migration import migrate_fs1
    from stream.testing import sample_transaction

    events = [sample_transaction(i) for i in range(6_000)]  # about 60 a card: records leave the ring
    offline = OfflineFeatures(FeatureEngine(7))
    offline.run(events, [], batch=500)
    client = redis.Redis.from_url(infra.redis_url)
    # fs1 kept the whole history (its last 128..256 records) at the key without the version.
    for i, c in enumerate(offline.customers):
        mine = [e for e in events if e["customer_id"] == c]
        records = np.zeros(len(mine), dtype=HISTORY_DTYPE)
        records["tx"] = [int(h) for h in _hashes(mine)]
        records["ts"] = [e["event_time"] for e in mine]
        records["amount"] = [e["amount"] for e in mine]
        records["lat"] = [np.nan if e.get("latitude") is None else e["latitude"] for e in mine]
        records["lon"] = [np.nan if e.get("longitude") is None else e["longitude"] for e in mine]
        records["dev"] = [int(d) if e.get("device_id") else 0 for e, d in zip(mine, _hashes(mine, "device_id"), strict=True)]
        client.set(f"fs:{uid}:{{c:{c}}}", records.tobytes())
        if i == 0:
            client.set(f"fs:{uid}-other:{{c:{c}}}", records.tobytes())  # another namespace: untouched
    assert migrate_fs1(client, uid, 40) == len(offline.customers)
    assert migrate_fs1(client, uid, 40) == len(offline.customers)  # again: the same cards
    for c, card in offline.customers.items():
        assert card_from_bytes(cast(bytes, client.get(f"fs:{uid}:{{c:{c}}}:fs2"))).tobytes() == card.tobytes()
    assert client.get(f"fs:{uid}-other:{{c:{next(iter(offline.customers))}}}:fs2") is None
    client.close()


def _hashes(events: list[dict[str, object]], field: str = "transaction_id") -> list[int]:
    from models.featureset import stable_hashes

    return [int(h) for h in stable_hashes([str(e.get(field) or "") for e in events])]


def test_writers_that_read_the_same_cards_count_each_record_once(redis_env: dict[str, str], uid: str) -> None:
    """A scorer fenced out mid-batch (its write lands after its successor's) must not count
    a record twice: the script sees the card moved since that writer's read and checks ids."""
    from stream.testing import sample_transaction

    events = [{**sample_transaction(i), "customer_id": f"c{i % 3}"} for i in range(120)]
    client = _client(redis_env)
    store = RedisFeatureStore(client, uid, 40, FeatureEngine(7))
    store.features(events[:90])  # 30 records a card: the next ones start evicting
    cids = [f"c{k}" for k in range(3)]
    cards, terminals = store.load(cids, [])
    first = store.engine.transform(events[90:105], cards, terminals)
    second = store.engine.transform(events[90:120], cards, terminals)  # read the same state, more records
    store._write_state(first, cards)
    store._write_state(second, cards)  # stale read: the script applies its records itself, skipping 90..104
    offline = OfflineFeatures(FeatureEngine(7))
    offline.run(events, [], batch=30)
    after, _ = store.load(cids, [])
    assert {c: k.tobytes() for c, k in after.items()} == {c: k.tobytes() for c, k in offline.customers.items()}
    client.close()
