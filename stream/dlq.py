"""Dead-letter records: the original bytes untouched, provenance in headers."""

from __future__ import annotations

import time

from stream.codec import Failure

Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]  # topic, key, value, headers


def dlq_record(dlq_topic: str, failure: Failure, stage: str, now_ms: int | None = None) -> Record:
    """A DLQ record for `failure`, keyed as the original was."""
    src = failure.source
    headers = [
        ("error.class", failure.error.encode()),
        ("error.message", failure.reason.encode()[:1000]),
        ("stage", stage.encode()),
        ("source.topic", src.topic.encode()),
        ("source.partition", str(src.partition).encode()),
        ("source.offset", str(src.offset).encode()),
        ("source.timestamp", str(src.timestamp_ms).encode()),
        ("dlq.timestamp", str(now_ms if now_ms is not None else int(time.time() * 1000)).encode()),
    ]
    return (dlq_topic, src.key, failure.raw, headers)


def headers_dict(
    headers: list[tuple[str, bytes]] | list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None,
) -> dict[str, str]:
    """DLQ headers as text, for tools and tests."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return {k: v.decode(errors="replace") if isinstance(v, bytes) else (v or "") for k, v in items}
