"""Both examples end to end: a real `keyturn serve`, real users and API keys, the examples configured
by KEYTURN_ISSUER alone. The FastAPI example runs as its own uvicorn process; the Flask one in
process, its guard talking to the real server over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples import orders_flask
from tests.conftest import PASSWORD
from tests.process import KEYTURN, free_port, keyturn_server, running

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROLES = {"user": ["orders:read", "orders:write"], "admin": ["orders:read", "orders:write"]}
Answer = tuple[int, dict[str, Any]]
Call = Callable[..., Answer]


@dataclass(frozen=True)
class AuthServer:
    url: str
    env: dict[str, str]


@dataclass(frozen=True)
class People:
    alice: dict[str, Any]
    bob: dict[str, Any]
    admin: dict[str, Any]
    alice_reader_key: str


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """`keyturn serve` on a free loopback port, SQLite in a temporary data dir, orders scopes by role."""
    tmp = tmp_path_factory.mktemp("keyturn")
    port = free_port()
    env = {
        "KEYTURN_ISSUER": f"http://127.0.0.1:{port}",
        "KEYTURN_DATA_DIR": str(tmp / "data"),
        "KEYTURN_DATABASE_URL": f"sqlite:///{tmp / 'data' / 'keyturn.db'}",
        "KEYTURN_ROLES": json.dumps(ROLES),
        "KEYTURN_PASSWORD_PROFILE": "test-only-cheap",
    }
    with keyturn_server(env, tmp / "server.log", port=port) as url:
        yield AuthServer(url, env)


def _login(client: httpx.Client, email: str) -> dict[str, Any]:
    response = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


@pytest.fixture(scope="module")
def people(auth_server: AuthServer) -> People:
    """Alice and Bob register over HTTP; the admin is made with the CLI; Alice makes a read-only API key."""
    created = subprocess.run(
        [KEYTURN, "users", "create", "admin@example.com", "--role", "admin", "--password-stdin"],
        input=PASSWORD,
        text=True,
        capture_output=True,
        env={**os.environ, **auth_server.env},
        check=False,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    with httpx.Client(base_url=auth_server.url, timeout=10) as client:
        for email in ("alice@example.com", "bob@example.com"):
            response = client.post("/auth/register", json={"email": email, "password": PASSWORD})
            assert response.status_code == 201, response.text
        alice = _login(client, "alice@example.com")
        made = client.post(
            "/auth/api-keys",
            json={"name": "reporting", "scopes": ["orders:read"]},
            headers={"Authorization": f"Bearer {alice['access_token']}"},
        )
        assert made.status_code == 201, made.text
        return People(
            alice=alice,
            bob=_login(client, "bob@example.com"),
            admin=_login(client, "admin@example.com"),
            alice_reader_key=made.json()["data"]["key"],
        )


def _example_env(auth_server: AuthServer) -> dict[str, str]:
    """The environment of a resource server: no KEYTURN_* setting but the issuer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    return {**env, "KEYTURN_ISSUER": auth_server.url}


@pytest.fixture(scope="module")
def fastapi_example(auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """examples/orders_api.py under uvicorn, as the README runs it."""
    port = free_port()
    log = tmp_path_factory.mktemp("orders-api") / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "examples.orders_api:app", "--port", str(port), "--app-dir", str(ROOT)]
    url = f"http://127.0.0.1:{port}"
    with running(command, _example_env(auth_server), log, f"{url}/healthz", cwd=ROOT):
        yield url


def _fastapi_caller(url: str) -> Iterator[Call]:
    with httpx.Client(base_url=url, timeout=10) as client:

        def call(method: str, path: str, **kwargs: Any) -> Answer:
            response = client.request(method, path, **kwargs)
            return response.status_code, response.json()

        yield call


def _flask_caller(auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Call]:
    for name in [n for n in os.environ if n.startswith("KEYTURN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KEYTURN_ISSUER", auth_server.url)
    app = orders_flask.create_app()
    client = app.test_client()

    def call(method: str, path: str, **kwargs: Any) -> Answer:
        response = client.open(path, method=method, **kwargs)
        return response.status_code, response.get_json()

    yield call
    app.extensions["keyturn_guard"].close()


@pytest.fixture(params=["fastapi-uvicorn", "flask"])
def example(request: pytest.FixtureRequest, auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Call]:
    """A caller of one example, configured only by KEYTURN_ISSUER."""
    if request.param == "flask":
        yield from _flask_caller(auth_server, monkeypatch)
    else:
        yield from _fastapi_caller(request.getfixturevalue("fastapi_example"))


def bearer(who: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {who['access_token']}"}


def test_the_tutorial_story(example: Call, people: People, auth_server: AuthServer) -> None:
    """Users see their own orders, the admin sees and deletes any, API keys read; refusals follow the contract."""
    alice_id, bob_id = people.alice["user"]["id"], people.bob["user"]["id"]
    status, placed = example("POST", "/api/orders", headers=bearer(people.alice), json={"item": "tea", "qty": 2})
    assert status == 201, placed
    assert placed["data"]["order"]["owner"] == alice_id
    status, bobs = example("POST", "/api/orders", headers=bearer(people.bob), json={"item": "jam", "qty": 1})
    assert status == 201, bobs

    _, mine = example("GET", "/api/orders", headers=bearer(people.alice))
    assert [o["owner"] for o in mine["data"]["orders"]] == [alice_id]
    _, everything = example("GET", "/api/orders", headers=bearer(people.admin))
    assert {o["owner"] for o in everything["data"]["orders"]} == {alice_id, bob_id}

    bob_order = f"/api/orders/{bobs['data']['order']['id']}"
    status, refused = example("DELETE", bob_order, headers=bearer(people.alice))
    assert (status, refused["error"]["code"]) == (403, "FORBIDDEN")
    status, deleted = example("DELETE", bob_order, headers=bearer(people.admin))
    assert (status, deleted["data"]["order"]["id"]) == (200, bobs["data"]["order"]["id"])

    key = {"X-API-Key": people.alice_reader_key}
    status, by_key = example("GET", "/api/orders", headers=key)
    assert (status, [o["owner"] for o in by_key["data"]["orders"]]) == (200, [alice_id])
    status, write_by_key = example("POST", "/api/orders", headers=key, json={"item": "x", "qty": 1})
    assert (status, write_by_key["error"]["code"]) == (403, "FORBIDDEN")
    status, bad_key = example("GET", "/api/orders", headers={"X-API-Key": "ktk_not_a_key"})
    assert (status, bad_key["error"]["code"]) == (401, "TOKEN_INVALID")

    for headers, code in (({}, "UNAUTHORIZED"), ({"Authorization": "Bearer a.b.c"}, "TOKEN_INVALID")):
        status, body = example("GET", "/api/orders", headers=headers)
        assert (status, body["error"]["code"]) == (401, code)


def test_guards_are_stateless_until_the_token_expires(example: Call, auth_server: AuthServer) -> None:
    """After logout the server refuses the access token, while a resource server accepts it until exp (documented)."""
    with httpx.Client(base_url=auth_server.url, timeout=10) as client:
        email = f"carol-{free_port()}@example.com"
        assert client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        carol = _login(client, email)
        assert client.post("/auth/logout", headers=bearer(carol)).status_code == 200
        assert client.get("/auth/me", headers=bearer(carol)).json()["error"]["code"] == "TOKEN_REVOKED"
    status, _ = example("GET", "/api/orders", headers=bearer(carol))
    assert status == 200
