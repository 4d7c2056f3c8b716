"""The metrics endpoint bounds its connections: idle clients neither grow the service's
threads nor stay open, and a scrape is served once they are gone."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from stream.metrics import IDLE_TIMEOUT_S, MAX_CONNECTIONS, Metrics, serve
from stream.testing import free_port


def test_idle_connections_are_bounded_and_closed() -> None:
    port = free_port()
    server = serve(Metrics("test"), "127.0.0.1", port)
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - before <= MAX_CONNECTIONS
        time.sleep(IDLE_TIMEOUT_S + 1.0)
        assert threading.active_count() - before <= 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert reply.status == 200 and b"fraudstream_records_consumed" in reply.read()
    finally:
        for s in idle:
            s.close()
        server.shutdown()
        server.server_close()
