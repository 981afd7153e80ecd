"""Real server processes for tests: a free loopback port, `keyturn serve`, readiness, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["KEYTURN", "free_port", "keyturn_server", "wait_ready"]

KEYTURN = str(Path(sys.executable).parent / "keyturn")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not become ready in {timeout} s")


@contextmanager
def keyturn_server(
    env: dict[str, str], log: Path, *, port: int | None = None, args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Run ``keyturn serve`` with ``env`` added to the environment; yield its base URL."""
    port = port or free_port()
    full_env = {**os.environ, "KEYTURN_PASSWORD_PROFILE": "test-only-cheap", **env}
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [KEYTURN, "serve", "--port", str(port), *args], env=full_env, stdout=sink, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/healthz", proc)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
