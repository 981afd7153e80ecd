"""The `keyturn` command: users, token decode, migrate; same settings as the server."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from keyturn.cli import _check_app_in_child, main
from tests.conftest import PASSWORD


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"KEYTURN_DATA_DIR": str(tmp_path / "data"), "KEYTURN_PASSWORD_PROFILE": "test-only-cheap"}


def test_users_create_and_list(env: dict[str, str]) -> None:
    """An admin can be created from stdin and listed, without the password ever echoed."""
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["users", "create", "Root@Example.com", "--role", "admin", "--role", "user", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
    )
    assert created.exit_code == 0, created.output
    assert "root@example.com" in created.output
    assert PASSWORD not in created.output
    listed = runner.invoke(main, ["users", "list"], env=env)
    assert listed.exit_code == 0
    assert "root@example.com  roles=admin,user" in listed.output


def test_users_create_reports_policy_errors(env: dict[str, str]) -> None:
    """A weak password is refused with the reason, and a non-zero exit."""
    result = CliRunner().invoke(
        main, ["users", "create", "a@example.com", "--password-stdin"], input="password\n", env=env
    )
    assert result.exit_code != 0
    assert "password" in result.output


def test_users_create_refuses_duplicates(env: dict[str, str]) -> None:
    """Creating the same e-mail twice fails cleanly."""
    runner = CliRunner()
    args = ["users", "create", "b@example.com", "--password-stdin"]
    assert runner.invoke(main, args, input=PASSWORD + "\n", env=env).exit_code == 0
    again = runner.invoke(main, args, input=PASSWORD + "\n", env=env)
    assert again.exit_code != 0
    assert "already registered" in again.output


def test_migrate(env: dict[str, str]) -> None:
    """`keyturn migrate` brings an empty database up to date, idempotently."""
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["migrate"], env=env)
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output


def test_token_decode_warns_it_does_not_verify() -> None:
    """Decoding prints header and claims and says loudly that nothing was verified."""

    def seg(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    token = f"{seg({'alg': 'ES256', 'typ': 'at+jwt'})}.{seg({'sub': 'u1', 'exp': 1})}.c2ln"
    result = CliRunner().invoke(main, ["token", "decode", token])
    assert result.exit_code == 0
    assert "WITHOUT verification" in result.output
    assert json.loads(result.stdout)["claims"] == {"exp": 1, "sub": "u1"}


def test_token_decode_rejects_garbage() -> None:
    """Something that is not a JWT is an error, not a traceback."""
    result = CliRunner().invoke(main, ["token", "decode", "garbage"])
    assert result.exit_code != 0
    assert "not a JWT" in result.output


def test_unsafe_settings_refuse_to_start(env: dict[str, str]) -> None:
    """The CLI refuses an unsafe configuration with a clear message."""
    result = CliRunner().invoke(main, ["migrate"], env={**env, "KEYTURN_ALGORITHM": "none"})
    assert result.exit_code != 0
    assert "KEYTURN_ALGORITHM" in result.output


def test_the_app_check_of_serve_workers_reports_a_refused_configuration(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child that builds the app for `serve --workers N` turns a refusal into the refusal's own message."""
    for name, value in {**env, "KEYTURN_ALGORITHM": "none"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(click.ClickException, match="KEYTURN_ALGORITHM='none' is not allowed"):
        _check_app_in_child()
