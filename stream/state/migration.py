"""Moving a deployment's feature state to a new feature set, in place in Redis.

fs1 -> fs2: each card's fs1 history at `fs:{ns}:{c:<customer>}` (HISTORY_DTYPE records in
arrival order) becomes its fs2 card at `fs:{ns}:{c:<customer>}:fs2`
(`models.card.card_of_history`): the last RING_RECORDS records in the ring, the older ones
counted into their days. An fs1 history kept a card's last 128 to 256 records, so for a
card busier than that the 7 d / 30 d windows start with what it kept. Terminal rings,
label sets and the transaction id ledger keep their keys and layout, so they carry over as
they are. The fs1 keys are left to their TTL (or `fraudstream reset`).

Run it with the scorers stopped (`fraudstream state migrate`), then start the fs2 build: a
card written by the fs2 scorer before its migration would be overwritten by its history.
It is idempotent: running it again rebuilds the same cards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import numpy as np
import redis
from redis.cluster import RedisCluster

from models.card import card_of_history
from models.featureset import HISTORY_DTYPE
from models.units import DAY_MS
from stream.errors import FeatureStoreError
from stream.state.connection import Client

BATCH = 500


def fs1_history_keys(client: Client, namespace: str) -> Iterator[str]:
    """The fs1 card keys of a namespace (the pattern ends at the brace: fs2 keys do not match)."""
    for key in client.scan_iter(match=f"fs:{namespace}:{{c:*}}", count=1000):
        yield key.decode() if isinstance(key, bytes) else str(key)


def migrate_fs1(client: Client, namespace: str, ttl_days: int) -> int:
    """Build the fs2 card of every fs1 history in `namespace`; returns how many."""
    done = 0
    try:
        keys = list(fs1_history_keys(client, namespace))
        for start in range(0, len(keys), BATCH):
            chunk = keys[start : start + BATCH]
            read = client.mget_nonatomic if isinstance(client, RedisCluster) else client.mget
            blobs = cast(list[bytes | None], read(chunk))
            pipe = client.pipeline(transaction=False)
            for key, blob in zip(chunk, blobs, strict=True):
                if not blob or len(blob) % HISTORY_DTYPE.itemsize:
                    continue
                card = card_of_history(np.frombuffer(blob, dtype=HISTORY_DTYPE))
                pipe.set(f"{key}:fs2", card.tobytes(), px=ttl_days * DAY_MS)
                done += 1
            pipe.execute()
    except (redis.RedisError, OSError) as exc:
        raise FeatureStoreError(f"migration failed after {done} cards: {exc}") from exc
    return done
