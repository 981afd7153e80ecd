"""What each request costs the PostgreSQL primary, and how many refreshes one instance does per second.

    .venv/bin/python scripts/measure_writes.py [--pg postgresql://postgres@127.0.0.1:5432] [--seconds 10]

Part 1 runs the real app in-process against a fresh database and counts, for a login, a
refresh, a protected request (GET /auth/me) and a logout: the statements sent (round trips,
by leading verb; through SQLAlchemy and through the hot path's own driver, ``Database.driver``),
and, as PostgreSQL itself counts them (``pg_stat_user_tables``, ``pg_stat_database``), the
rows written and the transactions committed. Part 2 starts a real ``keyturn serve`` on that
database and refreshes as fast as 32 concurrent sessions can for ``--seconds``. docs/deploy.md
quotes both.
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
from keyturn.store.sql import Database, Driver, DriverStatement, create_engine

PASSWORD = "measure the writes of keyturn"
SAMPLES = 40


class StatementCounter:
    """Counts the statements an app sends, by leading verb, through SQLAlchemy and through its drivers."""

    def __init__(self) -> None:
        self.verbs: Counter[str] = Counter()

    def attach(self, engine: Any) -> None:
        event.listen(engine, "after_cursor_execute", self._statement)
        counter = self
        fetch, execute = Driver.fetch, Driver.execute

        async def counted_fetch(driver: Driver, statement: DriverStatement, params: Any) -> Any:
            counter.count(statement.bind(params, postgres=driver.postgres)[0])
            return await fetch(driver, statement, params)

        async def counted_execute(driver: Driver, statement: DriverStatement, params: Any) -> None:
            counter.count(statement.bind(params, postgres=driver.postgres)[0])
            await execute(driver, statement, params)

        Driver.fetch = counted_fetch  # type: ignore[method-assign]
        Driver.execute = counted_execute  # type: ignore[method-assign]
        Driver.fetchrow = lambda driver, statement, params: _first(driver.fetch(statement, params))  # type: ignore[method-assign]

    def count(self, statement: str) -> None:
        self.verbs[statement.lstrip().split(None, 1)[0].upper()] += 1

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.count(statement)

    def snapshot(self) -> Counter[str]:
        return Counter(self.verbs)


async def _first(rows: Any) -> Any:
    found = await rows
    return found[0] if found else None


async def written_and_committed(pg: str, name: str) -> tuple[int, int]:
    """Rows written (inserted, updated, deleted) and transactions committed in database ``name``, so far.

    PostgreSQL counts them per server process and publishes them when a process ends (or
    idles a while): the caller closes its pool first. This query's own commit is not counted.
    """
    conn = await asyncpg.connect(f"{pg}/{name}", timeout=5)
    try:
        written = await conn.fetchval(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        )
        committed = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", name)
    finally:
        await conn.close()
    return int(written), int(committed)


async def _admin(pg: str, sql: str) -> None:
    conn = await asyncpg.connect(f"{pg}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


Sample = tuple[Counter[str], int, int]


def _per_op(before: Sample, after: Sample, n: int) -> dict[str, float]:
    verbs = after[0] - before[0]
    row = {"statements": sum(verbs.values()) / n}
    row |= {verb.lower(): verbs[verb] / n for verb in ("SELECT", "INSERT", "UPDATE", "WITH")}
    row["rows written"] = (after[1] - before[1]) / n
    row["commits"] = (after[2] - before[2] - 1) / n  # less the snapshot query's own
    return row


async def measure_statements(pg: str, name: str, data_dir: Path, redis_url: str | None) -> dict[str, dict[str, float]]:
    url = f"{pg}/{name}"
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

    async def sample() -> Sample:
        await app.state.services.db.engine.dispose()  # its server processes end and publish their counts
        await asyncio.sleep(0.5)
        return (counter.snapshot(), *await written_and_committed(pg, name))

    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keyturn.measure") as client,
    ):
        await client.post("/auth/register", json={"email": "m@example.com", "password": PASSWORD})
        login = {"email": "m@example.com", "password": PASSWORD}

        start = await sample()
        pairs = [(await client.post("/auth/login", json=login)).json()["data"] for _ in range(SAMPLES)]
        results["login"] = _per_op(start, await sample(), SAMPLES)

        start = await sample()
        for pair in pairs:
            answer = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            pair.update(answer.json()["data"])
        results["refresh"] = _per_op(start, await sample(), SAMPLES)

        start = await sample()
        for pair in pairs:
            await client.get("/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
        results["GET /auth/me"] = _per_op(start, await sample(), SAMPLES)

        start = await sample()
        for pair in pairs:
            await client.post("/auth/logout", headers={"Authorization": f"Bearer {pair['access_token']}"})
        results["logout"] = _per_op(start, await sample(), SAMPLES)
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
                table = await measure_statements(args.pg, name, Path(tmp), redis_url)
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
