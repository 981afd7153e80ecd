"""Servers under test: started on a free loopback port, measured from /proc, and stopped with every worker.

Real processes: a small Python HTTP server that forks a worker, as uvicorn and granian do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bench.servers import ServerError, ServerSpec, cpu_seconds, peak_rss, running, wait_quiet

pytestmark = pytest.mark.slow

#: Serves ``/`` on the port given, after forking a worker that allocates ~40 MiB and then spins
#: for ``spin`` seconds of CPU and sleeps; the parent prints the worker's pid for the test.
_SERVER = textwrap.dedent(
    """
    import os, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    port, spin = int(sys.argv[1]), float(sys.argv[2])
    worker = os.fork()
    if worker == 0:
        ballast = bytearray(40 * 1024 * 1024)
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        end = time.process_time() + spin
        while time.process_time() < end:
            pass
        time.sleep(600)
        os._exit(0)
    print(worker, flush=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


def _spec(spin_s: float = 0.0, ready_path: str = "/") -> ServerSpec:
    return ServerSpec("forking", [sys.executable, "-c", _SERVER, "{port}", str(spin_s)], ready_path, ready_timeout_s=10)


def _worker_pid(log: Path) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        first = log.read_text().split()
        if first:
            return int(first[0])
        time.sleep(0.05)
    raise AssertionError("the server printed no worker pid")


def _gone(pid: int, within_s: float = 5.0) -> bool:
    """Whether ``pid`` ended (or is a zombie waiting for init) within ``within_s``: SIGKILL is asynchronous."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_a_server_is_measured_with_its_workers_and_stopped_with_them(tmp_path: Path) -> None:
    with running(_spec(spin_s=0.3), tmp_path) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        worker = _worker_pid(server.log_path)
        wait_quiet(server, timeout_s=10)  # the worker's 0.3 s of spinning is over
        rss = peak_rss(server.process.pid)
        assert set(rss.per_process) == {server.process.pid, worker}
        # The worker touched 40 MiB: the per-worker figure is its own peak, not the parent's.
        assert rss.max_process_kib >= 40 * 1024
        assert rss.per_process[worker][1] == rss.max_process_kib
        assert rss.total_kib > rss.max_process_kib
        assert cpu_seconds(server.process.pid) >= 0.3
    assert server.process.poll() is not None
    try:
        assert _gone(worker)  # the forked worker went with its process group
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


def test_a_server_that_dies_before_answering_is_an_error_with_its_log(tmp_path: Path) -> None:
    spec = ServerSpec("broken", [sys.executable, "-c", "import sys; sys.exit('no such config')"], "/")
    with pytest.raises(ServerError, match=r"exited early(.|\n)*no such config"), running(spec, tmp_path):
        pass
