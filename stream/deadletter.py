"""Dead letters: the original bytes untouched, provenance in headers.

A record too large to copy whole (its bytes over MAX_DLQ_VALUE_BYTES, well inside the
producer's `message.max.bytes`, see `stream.config.PRODUCER_MAX_MESSAGE_BYTES`) is
dead-lettered without its value: the headers then carry its size and SHA-256
(`payload.bytes`, `payload.sha256`, `payload.omitted`) beside the provenance, so the
original can still be found and verified in the source topic. A DLQ record never
fails for its size, so a poison pill can never become a retry loop.
"""

from __future__ import annotations

import hashlib
import time

from stream.records import Failure, Output

MAX_DLQ_VALUE_BYTES = 512 * 1024
MAX_DLQ_KEY_BYTES = 1024


def dead_letter(dlq_topic: str, failure: Failure, stage: str, now_ms: int | None = None) -> Output:
    """The DLQ record for `failure`, keyed as the original was."""
    src = failure.source
    headers = [
        ("error.class", failure.error.__name__.encode()),
        ("error.message", failure.reason.encode()[:1000]),
        ("stage", stage.encode()),
        ("source.topic", src.topic.encode()),
        ("source.partition", str(src.partition).encode()),
        ("source.offset", str(src.offset).encode()),
        ("source.timestamp", str(src.timestamp_ms).encode()),
        ("dlq.timestamp", str(now_ms if now_ms is not None else int(time.time() * 1000)).encode()),
    ]
    value, key = failure.raw, src.key
    if value is not None and len(value) > MAX_DLQ_VALUE_BYTES:
        headers += [
            ("payload.omitted", b"true"),
            ("payload.bytes", str(len(value)).encode()),
            ("payload.sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        value = None
    if key is not None and len(key) > MAX_DLQ_KEY_BYTES:
        headers.append(("key.sha256", hashlib.sha256(key).hexdigest().encode()))
        key = None
    return Output(dlq_topic, key, value, headers)


def headers_dict(
    headers: list[tuple[str, bytes]] | list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None,
) -> dict[str, str]:
    """DLQ headers as text, for tools and tests."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return {k: v.decode(errors="replace") if isinstance(v, bytes) else (v or "") for k, v in items}
