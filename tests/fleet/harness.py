"""Real ``keyturn serve`` processes on loopback: start several at once, wait, signal, read their logs."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import PG_ROOT, run_async
from tests.process import KEYTURN, free_port, spawn
from tests.process import stop as stop_process

__all__ = ["Instance", "create_empty_database", "drop_database", "start", "stop"]

#: The fleet shares these; rate limits are lifted because every test client is 127.0.0.1.
COMMON_ENV = {
    "KEYTURN_PASSWORD_PROFILE": "test-only-cheap",
    "KEYTURN_ISSUER": "http://keyturn.fleet",
    "KEYTURN_AUDIENCE": "keyturn-fleet",
    "KEYTURN_RATE_LIMIT_REFRESH": "100000/minute",
    "KEYTURN_RATE_LIMIT_LOGIN_IP": "100000/minute",
    "KEYTURN_RATE_LIMIT_REGISTER": "100000/hour",
    "KEYTURN_LOG_FORMAT": "json",
}


@dataclass
class Instance:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        """Poll /readyz until it answers 200; fail early, with the log, if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n" + "\n".join(self.lines()[-30:]))
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n" + "\n".join(self.lines()[-30:]))


def start(name: str, env: dict[str, str], workdir: Path, *, args: tuple[str, ...] = ()) -> Instance:
    """Start ``keyturn serve`` with its own data dir under ``workdir``; do not wait for it."""
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYTURN_", "PROMETHEUS_"))}
    data_dir = workdir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**base_env, **COMMON_ENV, "KEYTURN_DATA_DIR": str(data_dir), **env}
    log = workdir / f"{name}.log"
    proc = spawn([KEYTURN, "serve", "--port", str(port), *args], full_env, log)
    return Instance(name, f"http://127.0.0.1:{port}", proc, log)


def stop(instance: Instance, *, timeout: float = 20.0) -> int:
    """SIGTERM, wait, and return the exit status (SIGKILL if it hangs)."""
    return stop_process(instance.proc, timeout=timeout)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{PG_ROOT}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_empty_database(name: str) -> str:
    """A brand-new, unmigrated PostgreSQL database; its plain URL."""
    run_async(lambda: _admin(f'CREATE DATABASE "{name}"'))
    return f"{PG_ROOT}/{name}"


def drop_database(name: str) -> None:
    run_async(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
