"""``keyturn serve`` as a production process: workers sharing one port and one metrics view; graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORD
from tests.fleet.harness import Instance, start, stop

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_workers_do_not_start_when_the_app_cannot_be_built(tmp_path: Path) -> None:
    """`serve --workers 2` builds the app once in a child before forking: a failure stops it, with the reason."""
    data_dir = tmp_path / "not-a-directory"
    data_dir.write_text("a file where the data dir should be")
    instance = start("broken", {"KEYTURN_DATA_DIR": str(data_dir)}, tmp_path, args=("--workers", "2"))
    status = instance.proc.wait(timeout=60)
    assert status != 0
    log = instance.log.read_text()
    assert "the server could not be built" in log
    assert "FileExistsError" in log
    assert "Started server process" not in log


def healthz_count(base: str) -> float:
    """keyturn_http_requests_total for GET /healthz 200, as one scrape of ``base`` sees it."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "keyturn_http_requests_total" and sample.labels.get("route") == "/healthz"
    )


def test_workers_share_one_port_and_every_scrape_sees_all_of_them(tmp_path: Path, pg_url: str) -> None:
    """`serve --workers 2` runs two worker processes on one port; each /metrics scrape aggregates both workers."""
    metrics_dir = tmp_path / "prometheus"
    instance = start(
        "workers",
        {"KEYTURN_DATABASE_URL": pg_url, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        tmp_path,
        args=("--workers", "2"),
    )
    try:
        instance.wait_ready()
        workers = children(instance.proc.pid)
        assert len(workers) >= 2  # the workers (the supervisor may add a helper)
        # The supervisor never builds the app (a child process checked it, then exited), so it
        # holds far less than a worker does (~100 MiB each; docs/performance.md).
        assert rss_kib(instance.proc.pid) < 0.7 * max(rss_kib(pid) for pid in workers)
        for _ in range(20):
            assert httpx.get(f"{instance.base}/healthz", timeout=5).status_code == 200  # a new connection each
        assert [healthz_count(instance.base) for _ in range(4)] == [20.0] * 4
        assert list(metrics_dir.glob("*.db"))
    finally:
        assert stop(instance) in (0, -signal.SIGTERM)


def _send_login_head(base: str, body: bytes) -> socket.socket:
    """Open a connection and send a login's headers and half its body: the request is now in flight."""
    host, port = base.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /auth/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    conn.sendall(head + body[: len(body) // 2])
    return conn


def _finish(conn: socket.socket, body: bytes) -> tuple[int, dict[str, object]]:
    conn.sendall(body[len(body) // 2 :])
    raw = b""
    while chunk := conn.recv(65536):
        raw += chunk
    conn.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload)


def _refused(base: str) -> bool:
    host, port = base.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


def test_sigterm_lets_an_in_flight_login_finish(tmp_path: Path) -> None:
    """A login in flight at SIGTERM completes with 200 while new connections are refused; then the server exits."""
    instance: Instance = start("graceful", {"KEYTURN_SHUTDOWN_TIMEOUT": "20"}, tmp_path)
    try:
        instance.wait_ready()
        email = "graceful@example.com"
        registered = httpx.post(f"{instance.base}/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201
        body = json.dumps({"email": email, "password": PASSWORD}).encode()
        conn = _send_login_head(instance.base, body)
        time.sleep(0.5)  # let the server read the head and start the request
        instance.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not _refused(instance.base) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _refused(instance.base)
        assert instance.proc.poll() is None  # still finishing our request
        status, answer = _finish(conn, body)
        assert status == 200
        assert isinstance(answer["data"], dict)
        assert "access_token" in answer["data"]
        assert instance.proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        stop(instance)
