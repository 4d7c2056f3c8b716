"""Progress marks: what a stage's group has committed, remembered outside the broker.

After each committed batch a stage records, per input partition, the offset it
committed (a lower bound of the broker's committed offset: it is written after the
commit). When a partition is assigned without a committed offset, the mark tells a
first start of the group (no mark: start at `kafka.first_start`, said in the log)
from committed offsets the broker lost (a mark: the stage stops with OffsetsError
instead of deciding everything again from the beginning).

Layout: one hash per group, `pm:{ns}:{g:<group>}`, field `<topic>/<partition>`,
value the offset; one key per group, so one hash slot on a Redis Cluster.
The marks live as long as Redis keeps its data: run it with persistence (AOF) where
lost broker offsets must be caught after a Redis restart too.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from confluent_kafka import TopicPartition

from stream.errors import FeatureStoreError
from stream.state.connection import Client

# ARGV: (field, offset) pairs; each field keeps the larger of its value and the new one.
_RAISE = """
for i = 1, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > old then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


class ProgressMarks:
    def __init__(self, client: Client, namespace: str, group: str) -> None:
        self.client = client
        self.key = f"pm:{namespace}:{{g:{group}}}"
        self._raise = client.register_script(_RAISE)

    @staticmethod
    def field(tp: TopicPartition) -> str:
        return f"{tp.topic}/{tp.partition}"

    def record(self, offsets: Sequence[TopicPartition]) -> None:
        """Raise the marks of these partitions to their offsets (never lowers one)."""
        args: list[str | int] = []
        for tp in offsets:
            if tp.offset >= 0:
                args += [self.field(tp), tp.offset]
        if not args:
            return
        try:
            self._raise(keys=[self.key], args=args)
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"progress mark not recorded: {exc}") from exc

    def marks(self, partitions: Sequence[TopicPartition]) -> dict[tuple[str, int], int]:
        """The recorded offsets of those partitions that have one."""
        if not partitions:
            return {}
        try:
            values = self.client.hmget(self.key, [self.field(tp) for tp in partitions])
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"progress marks unreadable: {exc}") from exc
        return {(tp.topic, tp.partition): int(v) for tp, v in zip(partitions, values, strict=True) if v is not None}
