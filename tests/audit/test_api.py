"""GET /admin/audit (admins only, newest first, paged, filtered) and `keyturn audit tail`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from keyturn.cli import main
from keyturn.domain.audit import AuditEvent
from tests.audit.support import append, with_services
from tests.conftest import PASSWORD, SettingsFactory, app_of, assert_error, bearer, login, register, run_async

REPO = Path(__file__).resolve().parents[2]


async def admin_token(client: httpx.AsyncClient) -> str:
    """Create an administrator directly (as `keyturn users create --role admin` would) and log in."""
    await app_of(client).state.services.accounts.register("root@example.com", PASSWORD, roles=["admin", "user"])
    return str((await login(client, "root@example.com"))["access_token"])


@pytest.mark.anyio
async def test_audit_pages_newest_first_and_filters(client: httpx.AsyncClient) -> None:
    """Pages walk back through every record; user and event filters narrow them."""
    alice = await register(client, "alice@example.com")
    bob = await register(client, "bob@example.com")
    await client.post("/auth/login", json={"email": "bob@example.com", "password": "wrong password 7"})
    token = await admin_token(client)
    await login(client, "alice@example.com")

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/admin/audit", params=params, headers=bearer(token))).json()["data"]
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == len(set(ids)) == 5  # two registrations, bob's failure, root's and alice's logins
    assert seen[0]["event"] == AuditEvent.LOGIN_SUCCEEDED
    assert seen[0]["at"] == "2027-01-15T08:00:00Z"
    assert set(seen[0]) == {
        "id",
        "at",
        "event",
        "actor_id",
        "user_id",
        "email",
        "ip",
        "user_agent",
        "detail",
        "prev_hash",
        "hash",
    }

    about_bob = (await client.get("/admin/audit", params={"user": bob["id"]}, headers=bearer(token))).json()
    assert [e["event"] for e in about_bob["data"]["events"]] == [AuditEvent.LOGIN_FAILED, AuditEvent.REGISTERED]
    logins = await client.get(
        "/admin/audit", params={"event": AuditEvent.LOGIN_SUCCEEDED, "user": alice["id"]}, headers=bearer(token)
    )
    assert [e["user_id"] for e in logins.json()["data"]["events"]] == [alice["id"]]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "9" * 25}, "cursor"),
        ({"event": "login"}, "event"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
    ],
    ids=["cursor-not-a-number", "cursor-too-long", "unknown-event", "limit-zero", "limit-too-big"],
)
async def test_bad_parameters_are_validation_errors(
    client: httpx.AsyncClient, params: dict[str, str | int], field: str
) -> None:
    """Malformed cursors, unknown event types and limits out of range are 422 naming the parameter."""
    token = await admin_token(client)
    body = assert_error(await client.get("/admin/audit", params=params, headers=bearer(token)), 422, "VALIDATION_ERROR")
    assert field in body["error"]["fields"]


@pytest.mark.anyio
async def test_only_admins_read_the_audit_trail(client: httpx.AsyncClient) -> None:
    """No token: 401; a user without the admin role: 403."""
    assert_error(await client.get("/admin/audit"), 401, "UNAUTHORIZED")
    await register(client)
    user_token = (await login(client))["access_token"]
    assert_error(await client.get("/admin/audit", headers=bearer(user_token)), 403, "FORBIDDEN")


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "KEYTURN_DATABASE_URL": database_url,
        "KEYTURN_DATA_DIR": str(tmp_path / "data"),
        "KEYTURN_PASSWORD_PROFILE": "test-only-cheap",
    }


def test_accounts_created_from_the_cli_are_audited(cli_env: dict[str, str]) -> None:
    """`keyturn users create` leaves a user.registered record marked as done from the command line."""
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["users", "create", "ops@example.com", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
        env=cli_env,
    )
    assert created.exit_code == 0, created.output
    (record,) = [json.loads(line) for line in runner.invoke(main, ["audit", "tail"], env=cli_env).output.splitlines()]
    assert record["event"] == AuditEvent.REGISTERED
    assert record["email"] == "ops@example.com"
    assert record["detail"] == {"roles": ["admin"], "via": "cli"}
    assert PASSWORD not in json.dumps(record)


def test_tail_prints_the_newest_records_as_json_lines(make_settings: SettingsFactory, cli_env: dict[str, str]) -> None:
    """`keyturn audit tail -n 3` prints the last three records, oldest of them first."""
    settings = make_settings()
    run_async(lambda: with_services(settings, lambda s: append(s, 5)))
    result = CliRunner().invoke(main, ["audit", "tail", "-n", "3"], env=cli_env)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["id"] for line in lines] == [3, 4, 5]
    assert lines[-1]["email"] == "test4@example.com"


def wait_for_lines(path: Path, count: int, timeout: float = 20.0) -> list[dict[str, object]]:
    """The first ``count`` JSON lines written to ``path``, waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines()
        if len(lines) >= count:
            return [json.loads(line) for line in lines[:count]]
        time.sleep(0.05)
    raise AssertionError(f"only {path.read_text()!r} after {timeout} s")


@pytest.mark.slow
def test_tail_follow_prints_records_as_they_are_written(
    make_settings: SettingsFactory, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`keyturn audit tail -n 1 --follow` prints the newest record, then every record written after it."""
    settings = make_settings()
    run_async(lambda: with_services(settings, lambda s: append(s, 2, "old")))
    out = tmp_path / "tail.out"
    with out.open("w") as sink:
        follower = subprocess.Popen(
            [Path(sys.executable).with_name("keyturn"), "audit", "tail", "-n", "1", "--follow", "--interval", "0.1"],
            cwd=REPO,
            env={**os.environ, **cli_env},
            stdout=sink,
        )
    try:
        assert wait_for_lines(out, 1)[0]["email"] == "old1@example.com"  # following from here on
        run_async(lambda: with_services(settings, lambda s: append(s, 2, "new")))
        lines = wait_for_lines(out, 3)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    assert [line["email"] for line in lines] == ["old1@example.com", "new0@example.com", "new1@example.com"]
