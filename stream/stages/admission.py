"""What gets into stage 1: records that decode, validate and pass the checks against
their own metadata (size, event-time plausibility); the rest become failures for the DLQ."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Message

from models.featureset import stable_hashes
from models.units import DAY_MS
from stream.config import ScorerSettings
from stream.errors import ValidationError
from stream.kafka.codec import Codec, Decoded
from stream.records import Failure


def admit(codec: Codec, messages: Sequence[Message], settings: ScorerSettings) -> tuple[list[Decoded], list[Failure]]:
    """Decoded transactions that pass every check, and the failures (decode errors first)."""
    decoded = codec.decode_messages("Transaction", messages)
    failures, oks = list(decoded.errs), []
    for d in decoded.oks:
        problem = check(d, settings)
        if problem is None:
            oks.append(d)
        else:
            failures.append(problem)
    return oks, failures


def check(d: Decoded, settings: ScorerSettings) -> Failure | None:
    """Checks against the record's own metadata: size and event-time plausibility."""
    raw = d.raw
    size, limit = len(raw or b""), settings.max_record_bytes
    if size > limit:
        return Failure(raw, ValidationError, f"record of {size} bytes exceeds {limit}", d.source)
    skew_ms = d.value["event_time"] - d.source.timestamp_ms
    if skew_ms > settings.max_future_skew_s * 1000:
        return Failure(raw, ValidationError, f"event_time is {skew_ms / 1000:.0f} s after the record timestamp", d.source)
    max_age = settings.max_event_age_days
    if max_age and -skew_ms > max_age * DAY_MS:
        return Failure(raw, ValidationError, f"event_time is more than {max_age} days old", d.source)
    return None


def source_ids(decoded: Sequence[Decoded]) -> list[int]:
    """Per record, a nonzero id of the delivery it came from (topic/partition/offset)."""
    ids = stable_hashes([f"{d.source.topic}/{d.source.partition}/{d.source.offset}" for d in decoded])
    ids[ids == 0] = 1
    result: list[int] = ids.tolist()
    return result
