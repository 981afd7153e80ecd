"""What each request costs the PostgreSQL primary, and how many refreshes one instance does per second.

    .venv/bin/python scripts/measure_writes.py [--pg postgresql://postgres@127.0.0.1:5432] [--seconds 10]

Part 1 runs the real app in-process against a fresh database and counts, with
SQLAlchemy's cursor events, the statements (by verb), rows written and commits of a
login, a refresh, a protected request (GET /auth/me) and a logout. Part 2 starts a real
``keyturn serve`` on that database and refreshes as fast as 32 concurrent sessions
can for ``--seconds``. docs/deploy.md quotes both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import event

from keyturn.domain.audit import AuditEntry
from keyturn.server.app import create_app
from keyturn.settings import load_settings
from keyturn.store.audit import SqlAuditStore
from keyturn.store.migrate import migrate
from keyturn.store.sql import Database, create_engine

PASSWORD = "measure the writes of keyturn"
SAMPLES = 40


class StatementCounter:
    """Counts statements by verb, rows they wrote, and commits, on one engine."""

    def __init__(self) -> None:
        self.verbs: Counter[str] = Counter()
        self.rows_written = 0
        self.commits = 0

    def attach(self, engine: Any) -> None:
        event.listen(engine, "after_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, _conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        self.verbs[verb] += 1
        if verb in {"INSERT", "UPDATE", "DELETE"} and cursor.rowcount and cursor.rowcount > 0:
            self.rows_written += cursor.rowcount

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def snapshot(self) -> tuple[Counter[str], int, int]:
        return Counter(self.verbs), self.rows_written, self.commits


async def _admin(pg: str, sql: str) -> None:
    conn = await asyncpg.connect(f"{pg}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _per_op(before: tuple[Counter[str], int, int], after: tuple[Counter[str], int, int], n: int) -> dict[str, float]:
    verbs = after[0] - before[0]
    row = {verb.lower(): verbs[verb] / n for verb in ("SELECT", "INSERT", "UPDATE", "DELETE")}
    row["rows written"] = (after[1] - before[1]) / n
    row["commits"] = (after[2] - before[2]) / n
    return row


async def measure_statements(url: str, data_dir: Path, redis_url: str | None) -> dict[str, dict[str, float]]:
    settings = load_settings(
        database_url=url,
        redis_url=redis_url,
        redis_prefix=f"kt-measure-{secrets.token_hex(4)}:",
        data_dir=data_dir,
        password_profile="test-only-cheap",  # noqa: S106 - a profile name, not a password
        rate_limit_login_ip="100000/minute",
        rate_limit_refresh="100000/minute",
    )
    app = create_app(settings)
    counter = StatementCounter()
    counter.attach(app.state.services.db.engine.sync_engine)
    results: dict[str, dict[str, float]] = {}
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keyturn.measure") as client,
    ):
        await client.post("/auth/register", json={"email": "m@example.com", "password": PASSWORD})
        login = {"email": "m@example.com", "password": PASSWORD}

        start = counter.snapshot()
        pairs = [(await client.post("/auth/login", json=login)).json()["data"] for _ in range(SAMPLES)]
        results["login"] = _per_op(start, counter.snapshot(), SAMPLES)

        start = counter.snapshot()
        for pair in pairs:
            answer = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            pair.update(answer.json()["data"])
        results["refresh"] = _per_op(start, counter.snapshot(), SAMPLES)

        start = counter.snapshot()
        for pair in pairs:
            await client.get("/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
        results["GET /auth/me"] = _per_op(start, counter.snapshot(), SAMPLES)

        start = counter.snapshot()
        for pair in pairs:
            await client.post("/auth/logout", headers={"Authorization": f"Bearer {pair['access_token']}"})
        results["logout"] = _per_op(start, counter.snapshot(), SAMPLES)
    return results


def cpu_seconds(name: str | None = None, pid: int | None = None) -> float:
    """CPU time (user + system) used so far by every live process called ``name`` (or by ``pid``)."""
    total = 0
    for stat in Path("/proc").glob(f"{pid or '[0-9]*'}/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if pid is not None or comm == name:
            total += int(rest[11]) + int(rest[12])
    return total / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _refresh_loop(http: httpx.AsyncClient, token: str, until: float) -> int:
    done = 0
    while time.monotonic() < until:
        answer = await http.post("/auth/refresh", json={"refresh_token": token})
        answer.raise_for_status()
        token = answer.json()["data"]["refresh_token"]
        done += 1
    return done


async def measure_refresh_rate(
    url: str, data_dir: Path, seconds: float, sessions: int = 32
) -> tuple[float, float, float]:
    """(refreshes per second, PostgreSQL and keyturn CPU seconds per refresh) against one real instance."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")},
        "KEYTURN_DATABASE_URL": url,
        "KEYTURN_DATA_DIR": str(data_dir / "serve"),
        "KEYTURN_PASSWORD_PROFILE": "test-only-cheap",
        "KEYTURN_RATE_LIMIT_REFRESH": "10000000/minute",
        "KEYTURN_RATE_LIMIT_LOGIN_IP": "10000000/minute",
        "KEYTURN_LOG_LEVEL": "warning",
    }
    keyturn = str(Path(sys.executable).parent / "keyturn")
    proc = await asyncio.create_subprocess_exec(
        keyturn, "serve", "--port", str(port), env=env, stderr=subprocess.DEVNULL
    )
    try:
        limits = httpx.Limits(max_connections=sessions)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as http:
            for _ in range(300):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            login = {"email": "m@example.com", "password": PASSWORD}
            tokens = [
                (await http.post("/auth/login", json=login)).json()["data"]["refresh_token"] for _ in range(sessions)
            ]
            pg_before, kt_before = cpu_seconds("postgres"), cpu_seconds(pid=proc.pid)
            until = time.monotonic() + seconds
            counts = await asyncio.gather(*(_refresh_loop(http, t, until) for t in tokens))
            pg_used, kt_used = cpu_seconds("postgres") - pg_before, cpu_seconds(pid=proc.pid) - kt_before
        done = max(1, sum(counts))
        return sum(counts) / seconds, pg_used / done, kt_used / done
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=30)


async def measure_audit_appends(url: str, seconds: float, writers: int = 32) -> float:
    """Audit appends per second with ``writers`` concurrent appenders (they share one chain lock)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://"), pool_size=writers)
    await migrate(engine)
    store = SqlAuditStore(Database(engine))
    until = time.monotonic() + seconds

    async def append() -> int:
        done = 0
        while time.monotonic() < until:
            await store.append(AuditEntry(at=time.time(), event="token.refreshed", detail={"session_id": "x"}))
            done += 1
        return done

    try:
        return sum(await asyncio.gather(*(append() for _ in range(writers)))) / seconds
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pg", default=os.environ.get("KEYTURN_TEST_PG", "postgresql://postgres@127.0.0.1:5432"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis", default=os.environ.get("KEYTURN_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    name = f"kt_measure_{secrets.token_hex(4)}"
    await _admin(args.pg, f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"{args.pg}/{name}"
            for label, redis_url in (("database only", None), ("with Redis", args.redis)):
                table = await measure_statements(url, Path(tmp), redis_url)
                print(f"\n{label:<14}" + "".join(f"{c:>14}" for c in next(iter(table.values()))))
                for op, row in table.items():
                    print(f"{op:<14}" + "".join(f"{v:>14.2f}" for v in row.values()))
            rate, pg_cpu, kt_cpu = await measure_refresh_rate(url, Path(tmp), args.seconds)
            print(f"\nrefresh/s, one instance (1 worker), 32 sessions, {args.seconds:.0f} s: {rate:.0f}")
            print(f"CPU per refresh: PostgreSQL {pg_cpu * 1000:.2f} ms, keyturn {kt_cpu * 1000:.2f} ms")
            for writers in (1, 32):
                appends = await measure_audit_appends(url, args.seconds / 2, writers)
                print(f"audit appends/s, {writers} concurrent appenders (one chain lock): {appends:.0f}")
    finally:
        await _admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
