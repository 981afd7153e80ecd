"""A paced latency probe: what a user hitting a cheap endpoint would wait, while something else runs.

Why not wrk: a wrk run only counts requests that *finish* within its duration, so a server that
stalls a cheap endpoint for the whole of a login storm reports no latency at all (p99 "0 ms"). The
probe here sends one request per ``interval_s`` on one keep-alive connection and

* counts a request still unanswered when the window closes with the time it has waited so far, and
* corrects for coordinated omission: when one request takes ``L``, the requests that *would* have
  been sent at every missed tick are recorded as ``L - interval``, ``L - 2 interval``, ... (what a
  user arriving at those moments would have waited), like HdrHistogram's correction.

At 100 requests/s it costs the 2-core machine a few percent of a core. The probing process's own
garbage collector is off for the window, as :mod:`timeit`'s is while it times: the bench process
holds ~160,000 objects by its storms, a full collection of them takes 60-80 ms, and the correction
would charge that stall of the *client* to the server as seven or eight slow answers.
"""

from __future__ import annotations

import gc
import http.client
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.servers import LOOPBACK


@dataclass(frozen=True)
class ProbeResult:
    """Latencies seen by the probe (ms, coordinated-omission corrected) and what went wrong."""

    latencies_ms: Sequence[float]
    answered: int
    unanswered: int
    failures: int

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile, ``fraction`` in (0, 1]; 0.0 for an empty probe."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]

    @property
    def p50_ms(self) -> float:
        """Median latency."""
        return self.percentile(0.50)

    @property
    def p99_ms(self) -> float:
        """99th percentile latency."""
        return self.percentile(0.99)

    @property
    def ok(self) -> bool:
        """True when every answer was a 2xx (an unanswered request is a measurement, not a failure)."""
        return self.failures == 0 and self.answered > 0


def corrected(latency_s: float, interval_s: float) -> list[float]:
    """One measured latency plus the latencies of the ticks it swallowed, in ms."""
    samples = [latency_s]
    missed = latency_s - interval_s
    while missed > 0:
        samples.append(missed)
        missed -= interval_s
    return [s * 1000 for s in samples]


def probe(port: int, path: str, duration_s: float, interval_s: float = 0.01) -> ProbeResult:
    """Probe ``http://127.0.0.1:<port><path>`` for ``duration_s`` at one request per ``interval_s``."""
    collecting = gc.isenabled()
    gc.disable()  # a pause of this process's own is not the server's latency (module docstring)
    try:
        return _probe(port, path, duration_s, interval_s)
    finally:
        if collecting:
            gc.enable()


def _probe(port: int, path: str, duration_s: float, interval_s: float) -> ProbeResult:
    deadline = time.monotonic() + duration_s
    latencies: list[float] = []
    answered = unanswered = failures = 0
    connection = http.client.HTTPConnection(LOOPBACK, port)
    try:
        while (now := time.monotonic()) < deadline:
            connection.timeout = max(0.05, deadline - now)
            if connection.sock is not None:
                connection.sock.settimeout(connection.timeout)
            started = time.monotonic()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
            except TimeoutError:
                unanswered += 1
                latencies += corrected(time.monotonic() - started, interval_s)
                break
            except (OSError, http.client.HTTPException):
                failures += 1
                connection.close()
                continue
            elapsed = time.monotonic() - started
            answered += 1
            failures += not 200 <= response.status < 300
            latencies += corrected(elapsed, interval_s)
            time.sleep(max(0.0, interval_s - elapsed))
    finally:
        connection.close()
    return ProbeResult(latencies, answered, unanswered, failures)
