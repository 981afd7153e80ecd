"""The latency probe: coordinated omission corrected, a starved request counted, errors not hidden.

Driven against a real HTTP server on loopback whose answers the test controls.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bench.probe import ProbeResult, corrected, probe


def test_a_slow_answer_also_stands_for_the_requests_it_kept_from_being_sent() -> None:
    assert corrected(0.035, 0.010) == pytest.approx([35.0, 25.0, 15.0, 5.0])
    assert corrected(0.004, 0.010) == pytest.approx([4.0])


def test_percentiles_are_nearest_rank() -> None:
    result = ProbeResult([float(v) for v in range(100, 0, -1)], answered=100, unanswered=0, failures=0)
    assert (result.p50_ms, result.p99_ms, result.percentile(1.0)) == (50.0, 99.0, 100.0)
    assert ProbeResult([], answered=0, unanswered=0, failures=0).p99_ms == 0.0


@contextmanager
def _server(
    delays: dict[str, float], status: int = 200, on_request: Callable[[], None] = lambda: None
) -> Iterator[int]:
    """A loopback server: ``GET /slow`` waits ``delays["slow"]`` once, then answers at once.

    ``on_request`` runs on the server's thread, in the probe's own process, before each answer.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            on_request()
            delay = delays.pop(self.path.strip("/"), 0.0)
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_one_stall_shows_in_the_tail_with_the_ticks_it_swallowed() -> None:
    with _server({"slow": 0.12}) as port:
        result = probe(port, "/slow", duration_s=0.6, interval_s=0.01)
    assert result.ok
    assert result.unanswered == 0
    # The stalled request (~120 ms) plus ~11 corrected samples for the ticks it swallowed.
    assert max(result.latencies_ms) >= 120
    assert sum(1 for v in result.latencies_ms if v >= 50) >= 7
    assert len(result.latencies_ms) > result.answered


def test_a_request_still_unanswered_when_the_window_closes_is_counted_with_its_wait() -> None:
    with _server({"slow": 1.5}) as port:
        result = probe(port, "/slow", duration_s=0.4, interval_s=0.01)
    assert result.unanswered == 1
    assert result.answered == 0
    assert max(result.latencies_ms) >= 350
    assert not result.ok  # nothing answered: not a measurement of latency


def test_error_answers_are_failures_not_latencies_to_trust() -> None:
    with _server({}, status=503) as port:
        result = probe(port, "/healthz", duration_s=0.2, interval_s=0.01)
    assert result.answered > 0
    assert result.failures == result.answered
    assert not result.ok


def test_the_probing_process_does_not_collect_garbage_during_the_window() -> None:
    """A full collection in the probe's own process would stall it, and be charged to the server."""
    seen: list[bool] = []
    assert gc.isenabled()
    with _server({}, on_request=lambda: seen.append(gc.isenabled())) as port:
        result = probe(port, "/healthz", duration_s=0.1, interval_s=0.01)
    assert result.ok
    assert seen
    assert not any(seen)
    assert gc.isenabled(), "collection is back on once the window closes"
