"""bench.processes: which socket listens on a port, read from /proc/net/tcp text."""

from __future__ import annotations

from bench.processes import bootstrap_port, listening_inodes, redis_port

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
# 9092 = 0x2384 listening; 6379 = 0x18EB listening; 9093 = 0x2385 established only.
TCP = HEADER + (
    "   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n"
    "   1: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1 0 100 0 0 10 0\n"
    "   2: 0100007F:2385 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 6161 1 0 20 4 30 10 -1\n"
)
TCP6 = HEADER + (
    "   0: 00000000000000000000000001000000:2384 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 7373 1 0 100 0 0 10 0\n"
)


def test_only_listening_sockets_on_the_port_are_taken() -> None:
    assert listening_inodes(TCP, 9092) == {4242}
    assert listening_inodes(TCP, 6379) == {5151}
    assert listening_inodes(TCP, 9093) == set()  # a connection to 9093, no listener
    assert listening_inodes(TCP6, 9092) == {7373}
    assert listening_inodes(HEADER, 9092) == set()


def test_ports_come_from_the_settings_the_bench_uses() -> None:
    assert bootstrap_port("127.0.0.1:39092,127.0.0.1:39093") == ("127.0.0.1", 39092)
    assert bootstrap_port("SSL://localhost:9093") == ("localhost", 9093)
    assert redis_port("redis://127.0.0.1:16379/0") == ("127.0.0.1", 16379)
    assert redis_port("rediss://user@localhost/1") == ("localhost", 6379)
