"""Golden test of the Redis key layout: other tools and a Redis Cluster depend on it."""

from __future__ import annotations

import numpy as np
import redis

from models.features import FeatureEngine
from models.featureset import HISTORY_DTYPE
from stream.state.featurestore import RedisFeatureStore


def test_key_layout_is_pinned() -> None:
    # Constructing a client opens no connection.
    store = RedisFeatureStore(redis.Redis(), "live", 40, FeatureEngine(7))
    assert store.customer_key("c-000042") == "fs:live:{c:c-000042}"
    assert store.terminal_key("m-7") == "fs:live:{t:m-7}"
    # A terminal's ring and its labels set share the hash tag (one cluster slot per pair).
    assert store.terminal_key("m-7").split("{")[1].split("}")[0] == "t:m-7"


def test_history_blob_layout_is_pinned() -> None:
    assert HISTORY_DTYPE.itemsize == 56
    assert HISTORY_DTYPE.names == ("tx", "ts", "amount", "lat", "lon", "dev", "src")
    rec = np.array([(1, 2, 3, 4.0, 5.0, 6, 7)], dtype=HISTORY_DTYPE)
    assert rec.tobytes().hex()[:32] == "01000000000000000200000000000000"
