"""Prometheus metrics and the /metrics, /healthz, /readyz endpoint of a service.

Metrics live in a registry created per service instance (never at import time),
so tests and several stages in one process do not collide.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stream.records import BatchResult

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
LIVENESS_S = 60.0  # a loop that has not turned for this long is reported unhealthy
STALL_S = 60.0  # work waiting and nothing committed for this long: unhealthy, and the stage rebuilds its clients


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        r = self.registry = CollectorRegistry()
        self.decisions = Counter("fraudstream_decisions", "Decisions by route and outcome", ["route", "decision"], registry=r)
        self.dlq = Counter("fraudstream_dlq_records", "Records sent to the DLQ by error class", ["error"], registry=r)
        self.records = Counter("fraudstream_records_consumed", "Records consumed", registry=r)
        self.batch_size = Histogram(
            "fraudstream_batch_size", "Records per micro-batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2500), registry=r
        )
        self.step_seconds = Histogram(
            "fraudstream_step_seconds", "Time per batch step", ["step"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.decision_latency = Histogram(
            "fraudstream_decision_latency_seconds", "Input append to decision", buckets=LATENCY_BUCKETS, registry=r
        )
        self.lag = Gauge("fraudstream_consumer_lag", "Records behind the high watermark", ["partition"], registry=r)
        self.fallback_level = Gauge("fraudstream_fallback_level", "0 normal, 1 XGB_FALLBACK, 2 RULES, 3 SAFE_DEFAULT", registry=r)
        self.model = Gauge("fraudstream_model_version_info", "Model version in use (value 1)", ["version"], registry=r)
        self.retries = Counter("fraudstream_batch_retries", "Batches aborted and retried", registry=r)
        self.resets = Counter(
            "fraudstream_client_resets", "Kafka clients rebuilt to heal a stall or an unknown outcome", registry=r
        )
        self.last_loop = time.monotonic()
        # Since when work has waited with nothing committed (None: progressing or idle).
        self.stuck_since: float | None = None
        self.ready = False
        self._version: str | None = None

    def record_batch(
        self, result: BatchResult, dlq_topic: str | None = None, records: int = 0, process_s: float = 0.0, commit_s: float = 0.0
    ) -> None:
        """What a stage reported of one committed batch of `records`: decisions, dead letters,
        level, step times (the loop's `process` and `commit` among them), model."""
        if records:
            self.records.inc(records)
            self.batch_size.observe(records)
            self.step_seconds.labels("process").observe(process_s)
            self.step_seconds.labels("commit").observe(commit_s)
        for out in result.outputs:
            if out.topic == dlq_topic:
                self.dlq.labels(dict(out.headers).get("error.class", b"?").decode()).inc()
        tally: Tally[tuple[str, str]] = Tally()
        for d in result.decided:
            tally[(d.route, d.outcome)] += 1
            self.decision_latency.observe(d.latency_ms / 1000)
        for (route_name, outcome), n in tally.items():
            self.decisions.labels(route_name, outcome).inc(n)
        if result.level is not None:
            self.fallback_level.set(int(result.level))
        for step, seconds in result.step_seconds.items():
            self.step_seconds.labels(step).observe(seconds)
        if result.model_version is not None:
            self.set_model(result.model_version)

    def set_model(self, version: str) -> None:
        if version != self._version:
            if self._version is not None:
                self.model.remove(self._version)
            self.model.labels(version).set(1)
            self._version = version

    def progressed(self) -> None:
        """A batch committed, or nothing is waiting."""
        self.stuck_since = None

    def waiting(self, now: float, restart: bool = False) -> None:
        """Work is waiting and was not committed (restart: count the stall from now)."""
        if self.stuck_since is None or restart:
            self.stuck_since = now

    def stalled(self, now: float) -> bool:
        return self.stuck_since is not None and now - self.stuck_since >= STALL_S

    def healthy(self) -> bool:
        now = time.monotonic()
        return now - self.last_loop < LIVENESS_S and not self.stalled(now)


MAX_CONNECTIONS = 16  # served at once; more are closed at once (a scraper needs one)
IDLE_TIMEOUT_S = 5.0  # a connection that sends nothing for this long is closed


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS of them: idle or slow clients cannot
    grow the service's threads (2,000 idle connections once made 2,000 threads)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve(metrics: Metrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz from a daemon thread, on `metrics.host`."""

    class Handler(BaseHTTPRequestHandler):
        timeout = IDLE_TIMEOUT_S

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = metrics.healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"stalled: no progress with work waiting\n")
            elif self.path == "/readyz":
                self._send(200 if metrics.ready else 503, b"ready\n" if metrics.ready else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not worth a log line each

    server = BoundedServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name=f"metrics-{metrics.service}", daemon=True).start()
    return server
