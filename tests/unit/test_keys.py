"""Golden test of the Redis key layout: other tools and a Redis Cluster depend on it."""

from __future__ import annotations

import numpy as np
import redis

from models.card import CARD_BYTES, append, empty_card
from models.features import FeatureEngine
from models.featureset import CARD_DTYPE, HISTORY_DTYPE
from stream.state.featurestore import RedisFeatureStore


def test_key_layout_is_pinned() -> None:
    # Constructing a client opens no connection.
    store = RedisFeatureStore(redis.Redis(), "live", 40, FeatureEngine(7))
    # The card key carries its feature set: a build of another set never reads its bytes.
    assert store.customer_key("c-000042") == "fs:live:{c:c-000042}:fs2"
    assert store.terminal_key("m-7") == "fs:live:{t:m-7}"
    # A terminal's ring and its labels set share the hash tag (one cluster slot per pair).
    assert store.terminal_key("m-7").split("{")[1].split("}")[0] == "t:m-7"


def test_history_blob_layout_is_pinned() -> None:
    assert HISTORY_DTYPE.itemsize == 56
    assert HISTORY_DTYPE.names == ("tx", "ts", "amount", "lat", "lon", "dev", "src")
    rec = np.array([(1, 2, 3, 4.0, 5.0, 6, 7)], dtype=HISTORY_DTYPE)
    assert rec.tobytes().hex()[:32] == "01000000000000000200000000000000"


def test_card_blob_layout_is_pinned() -> None:
    # seq u8, 32 records of 56 bytes, 32 day buckets of (day i4, n i4, amount i8): the Lua
    # write script reads and writes these offsets.
    assert CARD_BYTES == 8 + 32 * 56 + 32 * 16 == 2312
    assert CARD_DTYPE.fields is not None and [CARD_DTYPE.fields[k][1] for k in ("seq", "ring", "days")] == [0, 8, 1800]
    card = empty_card()
    day_ms = 86_400_000
    records = np.zeros(33, dtype=HISTORY_DTYPE)
    records["tx"] = np.arange(1, 34)
    records["ts"] = 20_000 * day_ms
    records["amount"] = 250
    assert append(card, records) == 33
    raw = card.tobytes()
    assert raw[:8].hex() == "2100000000000000"  # 33 records
    assert raw[8:16].hex() == "2100000000000000"  # slot 0 now holds record 32 (tx 33)
    bucket = 1800 + (20_000 % 32) * 16  # record 0 left the ring for its day's bucket
    assert raw[bucket : bucket + 16].hex() == "204e0000" + "01000000" + "fa00000000000000"
