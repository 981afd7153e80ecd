"""Real server processes: racing refreshes over TCP from a thread pool, against one SQLite server and
against two servers sharing one PostgreSQL database; the development-mode warning at start."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import PASSWORD, run_async
from tests.process import keyturn_server

pytestmark = pytest.mark.slow

RACERS = 24
DEV_WARNING = "DEVELOPMENT MODE"
#: Real time passes in these tests: a wide grace window keeps a slow machine from turning a late
#: racer into a "reuse"; the window's edges are tested with a frozen clock in test_rotation.py.
GRACE = {"KEYTURN_REFRESH_GRACE": "120"}


@contextmanager
def _logs_on_failure(*logs: Path) -> Iterator[None]:
    """Print the servers' logs when the test fails (pytest shows captured output of failures)."""
    try:
        yield
    except BaseException:
        for log in logs:
            if log.exists():
                print(f"--- {log.name} ---\n{log.read_text()[-4000:]}")
        raise


def _register_and_login(base: str, email: str, **extra: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=30) as http:
        created = http.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        response = http.post("/auth/login", json={"email": email, "password": PASSWORD, **extra})
        assert response.status_code == 200, response.text
        return response


def _race(bases: Sequence[str], token: str) -> list[httpx.Response]:
    """Refresh ``token`` from RACERS threads at once, each on its own connection, spread over ``bases``."""
    start = threading.Barrier(RACERS)

    def one(i: int) -> httpx.Response:
        with httpx.Client(base_url=bases[i % len(bases)], timeout=60) as http:
            http.get("/healthz")  # open the connection before the start line
            start.wait(timeout=30)
            return http.post("/auth/refresh", json={"refresh_token": token})

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def _one_successor(answers: list[httpx.Response]) -> str:
    """All racers got a 200 with one and the same successor; return it."""
    assert not [r for r in answers if r.status_code >= 500], [r.text for r in answers if r.status_code >= 500]
    assert [r.status_code for r in answers] == [200] * RACERS, [r.text for r in answers if r.status_code != 200]
    successors: set[str] = {r.json()["data"]["refresh_token"] for r in answers}
    assert len(successors) == 1
    return successors.pop()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One `keyturn serve` in development mode on an SQLite file, shared by this module's tests."""
    home = tmp_path_factory.mktemp("dev-server")
    log = home / "dev.log"
    env = {"KEYTURN_DEV": "true", "KEYTURN_DATA_DIR": str(home / "data"), **GRACE}
    with _logs_on_failure(log), keyturn_server(env, log) as base:
        yield base, log


def test_threads_racing_one_sqlite_server_get_one_successor(dev_server: tuple[str, Path]) -> None:
    """24 threads refreshing one token at once against a real server process all get the same successor,
    and the chain goes on from it."""
    base, log = dev_server
    with _logs_on_failure(log):
        first = _register_and_login(base, "racer@example.com").json()["data"]
        successor = _one_successor(_race([base], first["refresh_token"]))
    with httpx.Client(base_url=base) as http:
        onward = http.post("/auth/refresh", json={"refresh_token": successor})
        assert onward.status_code == 200
        me = http.get("/auth/me", headers={"Authorization": f"Bearer {onward.json()['data']['access_token']}"})
        assert me.status_code == 200


def test_development_mode_says_so_and_serves_plain_http_cookies(dev_server: tuple[str, Path]) -> None:
    """With KEYTURN_DEV=true the server warns at start, and its cookies (no Secure) work over plain http."""
    base, log = dev_server
    assert DEV_WARNING in log.read_text()
    login = _register_and_login(base, "cookie@example.com", session="cookie")
    assert all("secure" not in h.lower() for h in login.headers.get_list("set-cookie"))
    with httpx.Client(base_url=base, cookies=login.cookies) as http:
        csrf = http.cookies["keyturn_csrf"]
        refreshed = http.post("/auth/refresh", headers={"X-CSRF-Token": csrf})
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.cookies["keyturn_refresh"] != login.cookies["keyturn_refresh"]


def _token_rows(pg_url: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(pg_url)
        try:
            return int(await conn.fetchval("SELECT COUNT(*) FROM refresh_tokens"))
        finally:
            await conn.close()

    return run_async(count)


def test_two_processes_on_one_postgres_never_fork_the_chain(tmp_path: Path, pg_url: str) -> None:
    """24 refreshes of one token split over two server processes sharing PostgreSQL: no 5xx, one successor,
    one new row; the chain goes on on either process, and a logout on one is enforced by the other at once."""
    env = {"KEYTURN_DATABASE_URL": pg_url, "KEYTURN_DATA_DIR": str(tmp_path / "data"), **GRACE}
    logs = [tmp_path / f"pg{i}.log" for i in range(2)]
    with _logs_on_failure(*logs), ExitStack() as stack:
        bases = [stack.enter_context(keyturn_server(env, log)) for log in logs]
        for log in logs:
            assert DEV_WARNING not in log.read_text()
        first = _register_and_login(bases[0], "alice@example.com").json()["data"]

        successor = _one_successor(_race(bases, first["refresh_token"]))
        assert _token_rows(pg_url) == 2

        a, b = (httpx.Client(base_url=base, timeout=30) for base in bases)
        with a, b:
            onward = b.post("/auth/refresh", json={"refresh_token": successor})
            assert onward.status_code == 200, onward.text
            auth = {"Authorization": f"Bearer {onward.json()['data']['access_token']}"}
            assert a.get("/auth/me", headers=auth).status_code == 200
            assert b.post("/auth/logout", headers=auth).status_code == 200
            refused = a.get("/auth/me", headers=auth)
            assert (refused.status_code, refused.json()["error"]["code"]) == (401, "TOKEN_REVOKED")
        assert _token_rows(pg_url) == 3
