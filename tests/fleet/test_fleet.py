"""Three real ``keyturn serve`` processes, one PostgreSQL database, one Redis: they behave as one server.

The instances are started at the same moment on an *empty* database, so the module
also proves that concurrent start-up migrates once and agrees on one key ring. The
tests run in file order; the last one kills an instance with SIGKILL.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

import keyturn.store.migrate
from tests.conftest import PASSWORD, REDIS_URL, bearer, unavailable
from tests.fleet.harness import Instance, create_empty_database, drop_database, start, stop
from tests.redis_fleet.support import redis_namespace

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REVOCATION_DEADLINE = 1.0
KEY_RING_DEADLINE = 5.0


@dataclass
class Fleet:
    instances: list[Instance]
    database_url: str

    def url(self, index: int) -> str:
        return self.instances[index % len(self.instances)].base

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url, timeout=5)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    name = f"kt_fleet_{secrets.token_hex(4)}"
    try:
        url = create_empty_database(name)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable("PostgreSQL", str(exc))
    try:
        with redis_namespace() as prefix:
            workdir = tmp_path_factory.mktemp("fleet")
            env = {"KEYTURN_DATABASE_URL": url, "KEYTURN_REDIS_URL": REDIS_URL, "KEYTURN_REDIS_PREFIX": prefix}
            instances = [start(f"instance-{i}", env, workdir) for i in range(3)]  # all at once
            try:
                for instance in instances:
                    instance.wait_ready()
                yield Fleet(instances, url)
            finally:
                for instance in instances:
                    stop(instance)
    finally:
        drop_database(name)


def claims(access_token: str) -> dict[str, Any]:
    """The (already verified by the server) claims of an access token."""
    payload = access_token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def signup(http: httpx.AsyncClient, base: str) -> str:
    email = f"user-{secrets.token_hex(4)}@example.com"
    response = await http.post(f"{base}/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


async def login_at(http: httpx.AsyncClient, base: str, email: str) -> dict[str, Any]:
    response = await http.post(f"{base}/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_instances_started_together_on_an_empty_database_agree(fleet: Fleet) -> None:
    """Started at once on an empty database, they migrate it once, make one signing key, publish one JWKS."""
    versions = await fleet.sql("SELECT version_num FROM alembic_version")
    script = ScriptDirectory(str(Path(keyturn.store.migrate.__file__).parent / "migrations"))
    assert [v["version_num"] for v in versions] == [script.get_current_head()]
    current = await fleet.sql("SELECT kid FROM signing_keys WHERE state = 'current'")
    assert len(current) == 1
    async with httpx.AsyncClient(timeout=10) as http:
        until = time.monotonic() + KEY_RING_DEADLINE
        while True:
            sets = [(await http.get(f"{i.base}/.well-known/jwks.json")).json() for i in fleet.instances]
            if all(s == sets[0] for s in sets) or time.monotonic() > until:
                break
            await anyio.sleep(0.1)
        assert all(s == sets[0] for s in sets)
        assert current[0]["kid"] in {k["kid"] for k in sets[0]["keys"]}


async def test_register_login_refresh_on_three_different_instances(fleet: Fleet) -> None:
    """Register on the first instance, log in on the second, refresh on the third, use the result on the first."""
    async with httpx.AsyncClient(timeout=10) as http:
        email = await signup(http, fleet.url(0))
        tokens = await login_at(http, fleet.url(1), email)
        refreshed = await http.post(f"{fleet.url(2)}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        me = await http.get(f"{fleet.url(0)}/auth/me", headers=bearer(refreshed.json()["data"]["access_token"]))
        assert me.status_code == 200
        assert me.json()["data"]["user"]["email"] == email


async def test_racing_refreshes_across_instances_yield_one_successor(fleet: Fleet) -> None:
    """Nine concurrent refreshes of one token, three per instance, all get the same successor: no fork."""
    async with httpx.AsyncClient(timeout=10) as http:
        email = await signup(http, fleet.url(0))
        tokens = await login_at(http, fleet.url(1), email)
        answers: list[httpx.Response] = []

        async def refresh(index: int) -> None:
            url = f"{fleet.url(index)}/auth/refresh"
            answers.append(await http.post(url, json={"refresh_token": tokens["refresh_token"]}))

        async with anyio.create_task_group() as tasks:
            for index in range(9):
                tasks.start_soon(refresh, index)
        assert [a.status_code for a in answers] == [200] * 9, [a.text for a in answers if a.status_code != 200]
        successors = {a.json()["data"]["refresh_token"] for a in answers}
        assert len(successors) == 1
        sid = claims(tokens["access_token"])["sid"]
        rows = await fleet.sql("SELECT count(*) AS n FROM refresh_tokens WHERE session_id = $1", sid)
        assert rows[0]["n"] == 2  # the spent token and its one successor
        onward = await http.post(f"{fleet.url(2)}/auth/refresh", json={"refresh_token": successors.pop()})
        assert onward.status_code == 200


async def test_logout_on_one_instance_is_refused_on_the_others_within_a_second(fleet: Fleet) -> None:
    """After a logout on one instance, the others answer TOKEN_REVOKED for that access token within one second."""
    async with httpx.AsyncClient(timeout=10) as http:
        email = await signup(http, fleet.url(0))
        access = (await login_at(http, fleet.url(0), email))["access_token"]
        for index in (1, 2):
            assert (await http.get(f"{fleet.url(index)}/auth/me", headers=bearer(access))).status_code == 200
        assert (await http.post(f"{fleet.url(0)}/auth/logout", headers=bearer(access))).status_code == 200
        logged_out = time.monotonic()
        for index in (1, 2):
            while True:
                response = await http.get(f"{fleet.url(index)}/auth/me", headers=bearer(access))
                if response.status_code != 200 or time.monotonic() - logged_out > REVOCATION_DEADLINE:
                    break
                await anyio.sleep(0.02)
            assert response.status_code == 401, f"instance {index} still accepts the token"
            assert response.json()["error"]["code"] == "TOKEN_REVOKED"


async def test_instances_log_json_lines_with_the_request_id_and_count_logins(fleet: Fleet) -> None:
    """A request's X-Request-ID shows up in that instance's JSON access log, and its login in /metrics."""
    trace = f"fleet-trace-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(timeout=10) as http:
        email = await signup(http, fleet.url(0))
        response = await http.post(
            f"{fleet.url(0)}/auth/login",
            json={"email": email, "password": PASSWORD},
            headers={"X-Request-ID": trace},
        )
        assert response.headers["x-request-id"] == trace
        metrics = (await http.get(f"{fleet.url(0)}/metrics")).text
    assert 'keyturn_logins_total{outcome="success"}' in metrics
    entries = [json.loads(line) for line in fleet.instances[0].lines() if line.startswith("{")]
    access = [e for e in entries if e["logger"] == "keyturn.access" and e.get("request_id") == trace]
    assert [(e["method"], e["route"], e["status"]) for e in access] == [("POST", "/auth/login", 200)]
    assert all({"ts", "level", "logger", "message"} <= e.keys() for e in entries)
    assert not any(PASSWORD in line for line in fleet.instances[0].lines())


async def test_kill_9_of_one_instance_under_refresh_load_loses_no_session(fleet: Fleet) -> None:
    """SIGKILL one instance while twelve sessions refresh across all three: retried elsewhere, all survive."""
    sessions, rounds, kill_after = 12, 8, 30
    victim = fleet.instances[2]
    progress = retried = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
        email = await signup(http, fleet.url(0))
        tokens = [(await login_at(http, fleet.url(i), email))["refresh_token"] for i in range(sessions)]

        async def refresh(token: str, first: int) -> str:
            """Rotate ``token``, moving to the next instance when one fails (a client behind a balancer)."""
            nonlocal retried
            for attempt in range(6):
                try:
                    response = await http.post(
                        f"{fleet.url(first + attempt)}/auth/refresh", json={"refresh_token": token}
                    )
                except httpx.TransportError:
                    retried += 1
                    continue
                if response.status_code < 500:
                    assert response.status_code == 200, response.text
                    successor: str = response.json()["data"]["refresh_token"]
                    return successor
            raise AssertionError("no instance answered")

        async def client(index: int) -> None:
            nonlocal progress
            for round_ in range(rounds):
                tokens[index] = await refresh(tokens[index], index + round_)
                progress += 1
                if progress == kill_after:
                    os.kill(victim.proc.pid, signal.SIGKILL)

        async with anyio.create_task_group() as tasks:
            for index in range(sessions):
                tasks.start_soon(client, index)
        assert victim.proc.wait(timeout=10) == -signal.SIGKILL
        assert retried > 0  # requests did meet the dead instance

        for token in tokens:
            response = await http.post(f"{fleet.url(0)}/auth/refresh", json={"refresh_token": token})
            assert response.status_code == 200, response.text
        listed = await http.get(
            f"{fleet.url(1)}/auth/sessions", headers=bearer(response.json()["data"]["access_token"])
        )
        assert len(listed.json()["data"]["sessions"]) == sessions
