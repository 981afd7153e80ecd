"""Real server processes for tests: a free loopback port, spawn, readiness, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["KEYTURN", "free_port", "keyturn_server", "running", "spawn", "stop", "wait_ready"]

KEYTURN = str(Path(sys.executable).parent / "keyturn")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    command: Sequence[str], env: Mapping[str, str], log: Path, *, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` with ``env`` as its whole environment, output appended to ``log``; do not wait."""
    with log.open("ab") as sink:
        return subprocess.Popen(list(command), env=dict(env), cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], *, timeout: float = 15.0) -> int:
    """SIGTERM, wait, SIGKILL if it hangs; return the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


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
def running(
    command: Sequence[str], env: Mapping[str, str], log: Path, ready_url: str, *, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process that is ready (``ready_url`` answers 200) for the block, and stopped after it."""
    proc = spawn(command, env, log, cwd=cwd)
    try:
        wait_ready(ready_url, proc)
        yield proc
    finally:
        stop(proc)


@contextmanager
def keyturn_server(
    env: dict[str, str], log: Path, *, port: int | None = None, args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Run ``keyturn serve`` with ``env`` added to the environment; yield its base URL."""
    port = port or free_port()
    full_env = {**os.environ, "KEYTURN_PASSWORD_PROFILE": "test-only-cheap", **env}
    base = f"http://127.0.0.1:{port}"
    with running([KEYTURN, "serve", "--port", str(port), *args], full_env, log, f"{base}/healthz"):
        yield base
