"""``keyturn keys rotate`` and ``keyturn keys list``: the operator's view of the ring, same settings as the server."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyturn.cli import main


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"KEYTURN_DATA_DIR": str(tmp_path / "data"), "KEYTURN_PASSWORD_PROFILE": "test-only-cheap"}


def listing(env: dict[str, str]) -> dict[str, list[list[str]]]:
    """``keyturn keys list`` parsed into {state: [[kid, alg, since, drop_after], ...]}."""
    result = CliRunner().invoke(main, ["keys", "list"], env=env)
    assert result.exit_code == 0, result.output
    rows: dict[str, list[list[str]]] = {"current": [], "next": [], "retired": []}
    for line in result.output.splitlines():
        state, kid, alg, since, drop = line.split()
        rows[state].append([kid, alg, since.removeprefix("since="), drop.removeprefix("drop_after=")])
    return rows


def test_list_shows_the_current_and_the_next_key(env: dict[str, str]) -> None:
    """A fresh ring lists one current and one next ES256 key, neither with a drop time."""
    rows = listing(env)
    assert len(rows["current"]) == len(rows["next"]) == 1
    assert rows["retired"] == []
    assert rows["current"][0][1] == "ES256"
    assert rows["current"][0][3] == "-"


def test_rotate_promotes_the_next_key_and_retires_the_current_one(env: dict[str, str]) -> None:
    """`keys rotate` prints the new kid (the former next key); the old one is listed retired with its drop time."""
    before = listing(env)
    result = CliRunner().invoke(main, ["keys", "rotate"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"rotated: {before['next'][0][0]} (ES256)")
    after = listing(env)
    assert after["current"][0][0] == before["next"][0][0]
    assert after["retired"][0][0] == before["current"][0][0]
    assert after["retired"][0][3] != "-"
    assert after["next"][0][0] not in {before["current"][0][0], before["next"][0][0]}


def test_rotate_compromised_replaces_every_key(env: dict[str, str]) -> None:
    """`keys rotate --compromised` leaves none of the old keys, not even the pre-published one."""
    before = {row[0] for rows in listing(env).values() for row in rows}
    result = CliRunner().invoke(main, ["keys", "rotate", "--compromised"], env=env)
    assert result.exit_code == 0, result.output
    after = listing(env)
    assert {row[0] for rows in after.values() for row in rows}.isdisjoint(before)
    assert after["retired"] == []


def test_rotate_in_hmac_mode_explains_itself(env: dict[str, str]) -> None:
    """With an HMAC algorithm the command fails cleanly, pointing at KEYTURN_SECRET."""
    hmac_env = {**env, "KEYTURN_ALGORITHM": "HS256", "KEYTURN_SECRET": "s" * 32}
    result = CliRunner().invoke(main, ["keys", "rotate"], env=hmac_env)
    assert result.exit_code == 1
    assert "KEYTURN_SECRET" in result.output
    assert "Traceback" not in result.output


def test_a_wrong_kek_is_a_clear_error(env: dict[str, str]) -> None:
    """Keys sealed with one KEK and read with another: the command exits 1 and names the setting."""

    def kek() -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()

    assert CliRunner().invoke(main, ["keys", "list"], env={**env, "KEYTURN_KEY_ENCRYPTION_KEY": kek()}).exit_code == 0
    result = CliRunner().invoke(main, ["keys", "list"], env={**env, "KEYTURN_KEY_ENCRYPTION_KEY": kek()})
    assert result.exit_code == 1
    assert "KEYTURN_KEY_ENCRYPTION_KEY does not decrypt" in result.output
