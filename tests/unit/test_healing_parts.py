"""The small parts healing rests on, without I/O: bounded DLQ copies, version names,
rate-limited client logs, and the stall that /healthz reports."""

from __future__ import annotations

import hashlib
import logging

import pytest

from models.artifacts import check_version
from models.errors import ArtifactError
from stream.config import PRODUCER_MAX_MESSAGE_BYTES
from stream.deadletter import MAX_DLQ_VALUE_BYTES, dead_letter, headers_dict
from stream.errors import DecodeError, ValidationError
from stream.kafka.clientlog import RateLimitedHandler
from stream.metrics import STALL_S, Metrics
from stream.records import Failure, Source
from stream.testing import FakeClock


def source() -> Source:
    return Source("in", 2, 41, 1_767_225_600_000, b"key")


def test_an_oversized_record_is_dead_lettered_with_its_digest_not_its_bytes() -> None:
    raw = b"\x00" * 1_500_000
    topic, key, value, headers = dead_letter("dlq", Failure(raw, ValidationError, "too big", source()), "scorer", now_ms=5)
    h = headers_dict(headers)
    assert (topic, key, value) == ("dlq", b"key", None)
    assert h["payload.omitted"] == "true" and h["payload.bytes"] == "1500000"
    assert h["payload.sha256"] == hashlib.sha256(raw).hexdigest()
    assert h["source.partition"] == "2" and h["source.offset"] == "41"
    assert sum(len(k) + len(v) for k, v in headers) < 2_000 < MAX_DLQ_VALUE_BYTES < PRODUCER_MAX_MESSAGE_BYTES


def test_a_record_within_the_limit_is_copied_whole() -> None:
    raw = b"\x01" * MAX_DLQ_VALUE_BYTES
    _topic, _key, value, headers = dead_letter("dlq", Failure(raw, DecodeError, "bad", source()), "scorer", now_ms=5)
    assert value == raw and "payload.omitted" not in headers_dict(headers)


@pytest.mark.parametrize("name", ["../../etc", "/tmp/x", "a/b", ".hidden", "", "latest", "x" * 65, "v1\n"])
def test_version_names_that_are_paths_are_refused(name: str) -> None:
    with pytest.raises(ArtifactError, match="not a version name"):
        check_version(name)


@pytest.mark.parametrize("name", ["v1", "v-broken", "2026-12-01.3", "A_b"])
def test_version_names(name: str) -> None:
    assert check_version(name) == name


def test_librdkafka_lines_are_rate_limited_per_facility_and_client() -> None:
    clock = FakeClock()
    handler = RateLimitedHandler(every_s=10.0, clock=clock)

    def line(fac: str, client: str) -> None:
        handler.emit(logging.LogRecord("k", logging.ERROR, "", 0, "%s [%s] %s", (fac, client, "Connect failed"), None))

    for _ in range(500):  # an outage: librdkafka repeats the same failure
        line("FAIL", "scorer#producer-1")
        clock.advance(0.05)
    line("FAIL", "scorer#consumer-2")
    assert handler.forwarded == 3 + 1  # at 0, 10 and 20 s of the 25 s, and the other client once


def test_healthz_fails_once_work_has_waited_stall_s_without_progress() -> None:
    m = Metrics("t")
    m.waiting(100.0)
    assert not m.stalled(100.0 + STALL_S - 1)
    assert m.stalled(100.0 + STALL_S)
    m.waiting(130.0)  # still waiting: the stall counts from the first moment
    assert m.stalled(100.0 + STALL_S)
    m.progressed()
    assert not m.stalled(500.0)
    m.waiting(600.0, restart=True)
    assert not m.stalled(600.0 + STALL_S - 1)
