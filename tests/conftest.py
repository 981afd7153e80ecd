"""Shared fixtures: real databases (SQLite and PostgreSQL), the real app over httpx, a frozen clock.

Tests that take ``backend`` run once per database. PostgreSQL is used for real at
``KEYTURN_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432``): each test gets
its own database cloned from a migrated template. With ``CI=true`` an unreachable
PostgreSQL or Redis fails the run; elsewhere those tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from keyturn.clock import FrozenClock
from keyturn.server.app import create_app
from keyturn.settings import Settings, load_settings

PG_ROOT = os.environ.get("KEYTURN_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("KEYTURN_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct horse battery staple"
T = TypeVar("T")


def unavailable(what: str, reason: str) -> None:
    """Skip (locally) or fail (in CI) a test whose real backing service is unreachable."""
    message = f"{what} unreachable: {reason}"
    if IN_CI:
        pytest.fail(message + " (mandatory with CI=true)")
    print(f"\nSKIP: {message}")
    pytest.skip(message)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _pg_admin() -> asyncpg.Connection:
    return await asyncpg.connect(f"{PG_ROOT}/postgres", timeout=5)


_TEMPLATE: dict[str, str] = {}


async def _template() -> str:
    """A database migrated once per test run, cloned for every test."""
    if "name" in _TEMPLATE:
        return _TEMPLATE["name"]
    name = f"kt_tpl_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    from keyturn.store.migrate import migrate  # noqa: PLC0415
    from keyturn.store.sql import create_engine  # noqa: PLC0415

    engine = create_engine(f"postgresql+asyncpg://{PG_ROOT.split('://', 1)[1]}/{name}")
    await migrate(engine)
    await engine.dispose()
    _TEMPLATE["name"] = name
    return name


def _drop_template() -> None:
    name = _TEMPLATE.get("name")
    if name:
        run_async(lambda: _drop_database(name))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    with suppress(OSError, asyncpg.PostgresError):
        _drop_template()


def run_async(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run admin coroutines on a private loop in a thread, away from the test's own loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work()).result()


async def _create_database() -> str:
    template = await _template()
    name = f"kt_{secrets.token_hex(6)}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return name


async def _drop_database(name: str) -> None:
    admin = await _pg_admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test (plain ``postgresql://`` URL)."""
    try:
        name = run_async(_create_database)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable("PostgreSQL", str(exc))
    yield f"{PG_ROOT}/{name}"
    run_async(lambda: _drop_database(name))


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once per database."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'keyturn.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)


class SettingsFactory(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> SettingsFactory:
    """Settings for a test: its own data dir and database, the cheap test-only hash profile."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "password_profile": "test-only-cheap",
            "issuer": "http://keyturn.test",
            "audience": "keyturn-tests",
            "purge_interval": 3600,
        }
        values.update(overrides)
        return load_settings(**values)

    return factory


class ClientFactory(Protocol):
    def __call__(
        self, settings: Settings | None = None, *, use_clock: bool = True, headers: dict[str, str] | None = None
    ) -> AbstractAsyncContextManager[httpx.AsyncClient]: ...


@pytest.fixture
def make_client(make_settings: SettingsFactory, clock: FrozenClock) -> ClientFactory:
    """``async with make_client() as client``: the real app, started, behind an httpx client."""

    @asynccontextmanager
    async def factory(
        settings: Settings | None = None, *, use_clock: bool = True, headers: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        # Not frozen: a test process starts an app per test (tests/server/test_heap.py covers the default).
        app = create_app(settings or make_settings(), clock=clock if use_clock else None, freeze_startup_heap=False)
        async with (
            LifespanManager(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50000)),
                base_url="http://keyturn.test",
                headers=headers,
            ) as client,
        ):
            client.app = app  # type: ignore[attr-defined]
            yield client

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


async def register(
    client: httpx.AsyncClient, email: str = "alice@example.com", password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    response = await client.post("/auth/register", json={"email": email, "password": password, **extra})
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()["data"]["user"]
    return user


async def login(
    client: httpx.AsyncClient, email: str = "alice@example.com", password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"email": email, "password": password, **extra})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def app_of(client: httpx.AsyncClient) -> FastAPI:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    return app


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's failure envelope with this status and code."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code, body
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    return body
