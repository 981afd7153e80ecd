"""The hash chain: edits and deletions are detected and named, and concurrent writers never fork it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyturn.cli import main
from keyturn.domain.audit import (
    GENESIS_HASH,
    AuditEntry,
    BrokenLink,
    StoredAuditEntry,
    chain_hash,
    check_detail,
    verify_chain,
)
from tests.audit.support import append, edit, remove, with_services
from tests.conftest import SettingsFactory, run_async

REPO = Path(__file__).resolve().parents[2]


def chain(count: int) -> list[StoredAuditEntry]:
    """``count`` correctly linked records, built with the pure functions."""
    records, prev = [], GENESIS_HASH
    for n in range(count):
        entry = AuditEntry(at=1_800_000_000.0 + n, event="login.failed", email=f"u{n}@example.com", detail={"n": n})
        digest = chain_hash(entry, prev)
        records.append(StoredAuditEntry(id=n + 1, entry=entry, prev_hash=prev, hash=digest))
        prev = digest
    return records


def test_an_intact_chain_verifies() -> None:
    """Correctly linked records have no broken link."""
    assert verify_chain(chain(5)) is None


def test_an_edited_record_is_named() -> None:
    """Changing any field of a record breaks its own hash."""
    records = chain(5)
    original = records[2]
    forged = AuditEntry(at=original.entry.at, event="login.succeeded", email=original.entry.email, detail={"n": 2})
    records[2] = StoredAuditEntry(id=3, entry=forged, prev_hash=original.prev_hash, hash=original.hash)
    assert verify_chain(records) == BrokenLink(3, "edited")


def test_a_deleted_record_is_noticed_at_its_successor() -> None:
    """Removing a record leaves the next one pointing at a hash that is not there."""
    records = chain(5)
    del records[1]
    assert verify_chain(records) == BrokenLink(3, "unlinked")


def test_a_rehashed_edit_still_breaks_the_next_link() -> None:
    """Recomputing the edited record's hash only moves the break to its successor."""
    records = chain(4)
    forged = AuditEntry(at=records[1].entry.at, event="login.failed", email="else@example.com", detail={"n": 1})
    records[1] = StoredAuditEntry(
        id=2, entry=forged, prev_hash=records[1].prev_hash, hash=chain_hash(forged, records[1].prev_hash)
    )
    assert verify_chain(records) == BrokenLink(3, "unlinked")


@pytest.mark.parametrize(
    "detail",
    [
        {"password": "x"},
        {"new_password": "x"},
        {"refresh_token": "x"},
        {"password_hash": "x"},
        {"client_secret": "x"},
        {"note": "ktr_abcdef"},
        {"note": "ktk_abcdef"},
        {"note": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},
        {"notes": ["fine", "ktr_abcdef"]},
    ],
    ids=[
        "password",
        "new-password",
        "refresh-token",
        "hash",
        "secret",
        "refresh-shape",
        "api-key-shape",
        "jwt-shape",
        "in-a-list",
    ],
)
def test_secrets_are_refused_by_name_and_shape(detail: dict[str, str | list[str]]) -> None:
    """A secret in an audit detail is a bug and raises, rather than being written down."""
    with pytest.raises(ValueError, match=r"secret|token or key"):
        check_detail(detail)


def verify_cli(settings_env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "verify"], env=settings_env)
    return result.exit_code, result.output


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "KEYTURN_DATABASE_URL": database_url,
        "KEYTURN_DATA_DIR": str(tmp_path / "data"),
        "KEYTURN_PASSWORD_PROFILE": "test-only-cheap",
    }


def test_verify_command_passes_and_then_names_an_edited_record(
    make_settings: SettingsFactory, cli_env: dict[str, str]
) -> None:
    """`keyturn audit verify` exits 0 on an intact chain and 1 naming the first record that was edited."""
    settings = make_settings()
    run_async(lambda: with_services(settings, lambda s: append(s, 6)))
    code, output = verify_cli(cli_env)
    assert code == 0, output
    assert "intact: 6 records" in output
    run_async(lambda: with_services(settings, lambda s: edit(s, 4)))
    code, output = verify_cli(cli_env)
    assert code == 1
    assert "record 4" in output
    assert "edited" in output


def test_verify_command_names_the_record_after_a_deleted_one(
    make_settings: SettingsFactory, cli_env: dict[str, str]
) -> None:
    """Deleting record 3 makes record 4 the first broken link."""
    settings = make_settings()
    run_async(lambda: with_services(settings, lambda s: append(s, 6)))
    run_async(lambda: with_services(settings, lambda s: remove(s, 3)))
    code, output = verify_cli(cli_env)
    assert code == 1
    assert "record 4" in output
    assert "deleted" in output


@pytest.mark.slow
def test_concurrent_processes_keep_one_chain(make_settings: SettingsFactory, database_url: str) -> None:
    """Four processes appending at once leave one unbroken chain with every record in it."""
    settings = make_settings()
    run_async(lambda: with_services(settings, lambda s: append(s, 0)))  # migrate once, up front
    writers = [
        subprocess.Popen([sys.executable, "-m", "tests.audit.support", database_url, "25", f"p{n}"], cwd=REPO)
        for n in range(4)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]

    count, broken, _ = run_async(lambda: with_services(settings, lambda s: s.audit.verify()))
    assert broken is None
    assert count == 100
