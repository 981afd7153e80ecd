"""Memory a serving process does not spend: no Alembic on a current schema, no zxcvbn word lists, no dummy hash
until a password is checked. Each saving must leave the behaviour it replaces exactly as it was."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from keyturn.crypto.passwords import TEST_ONLY_CHEAP, PasswordHasher
from keyturn.domain import identity
from keyturn.errors import InvalidCredentials, ValidationFailed
from keyturn.store.migrate import MIGRATIONS, head_revision, migrate
from keyturn.store.sql import create_engine

#: Packages a started server on an up-to-date database has no use for.
NOT_LOADED = ("alembic", "mako", "pygments", "zxcvbn")


def test_head_revision_is_alembics_head() -> None:
    """The head read from the scripts' source is the one Alembic itself finds."""
    assert head_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_head_revision_refuses_a_forked_history(tmp_path: Path) -> None:
    """Two scripts revising the same parent make two heads: refused, not guessed."""
    for name, parent in (("a", None), ("b", "a"), ("c", "a")):
        (tmp_path / f"{name}.py").write_text(f"revision = {name!r}\ndown_revision = {parent!r}\n")
    with pytest.raises(RuntimeError, match="one head"):
        head_revision(tmp_path)


def test_a_server_on_a_current_database_loads_neither_alembic_nor_zxcvbn(tmp_path: Path) -> None:
    """Started twice on one SQLite file: the second start finds the schema current and imports no Alembic."""
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from keyturn.server.services import build_services
        from keyturn.settings import load_settings

        async def start():
            services = build_services(load_settings(data_dir={str(tmp_path)!r}, password_profile="test-only-cheap"))
            await services.start()
            await services.close()

        asyncio.run(start())
        print(" ".join(sorted({{name.split(".")[0] for name in sys.modules}})))
        """
    )

    def loaded() -> set[str]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        return set(out.split())

    first, second = loaded(), loaded()
    assert "alembic" in first  # an empty database is migrated on start, with zero setup
    assert not second & set(NOT_LOADED)


@pytest.mark.anyio
async def test_migrating_a_current_database_changes_nothing(tmp_path: Path) -> None:
    """The second migrate of one database is a no-op that leaves the recorded revision as it was."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    try:
        await migrate(engine)
        await migrate(engine)
        async with engine.connect() as conn:
            rows = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
    finally:
        await engine.dispose()
    assert [row[0] for row in rows] == [head_revision()]


def test_processes_migrating_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """`serve --workers N` on a new SQLite file: every worker migrates at start; one applies, the rest wait.

    Three `keyturn migrate` processes started together on one new database: without the
    write lock taken before the upgrade, they collide ("table users already exists").
    """
    keyturn = str(Path(sys.executable).with_name("keyturn"))
    env = {"KEYTURN_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    runs = [
        subprocess.Popen([keyturn, "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs


def test_common_passwords_are_read_from_zxcvbns_source_exactly() -> None:
    """The list read from zxcvbn's source is, entry for entry, the one its module builds."""
    assert identity._zxcvbn_passwords_from_source() == FREQUENCY_LISTS["passwords"]


def test_the_compact_list_refuses_exactly_what_the_full_list_did() -> None:
    """Every listed password long enough to reach the check is refused; near misses and joins are not."""
    listed = set(FREQUENCY_LISTS["passwords"])
    long_enough = sorted(word for word in listed if len(word) >= identity.MIN_PASSWORD_LENGTH)
    for word in long_enough:
        with pytest.raises(ValidationFailed) as refused:
            identity.check_password(word.upper())
        assert "commonly used" in refused.value.fields["password"]
    joined = f"{long_enough[0]}\n{long_enough[1]}"
    near = [word + "~" for word in long_enough[:500]] + ["~" + word for word in long_enough[:500]] + [joined]
    for candidate in near:
        assert identity._is_common_password(candidate) is (candidate in listed)


def _verify(hasher: PasswordHasher, stored: str | None, password: str) -> None:
    asyncio.run(hasher.verify(stored, password))


def test_the_dummy_hash_is_made_by_the_first_verification_whatever_the_account() -> None:
    """No argon2 run at construction; the first verification makes the dummy, for a known account too."""
    for stored_is_known in (True, False):
        hasher = PasswordHasher(TEST_ONLY_CHEAP, max_concurrency=1)
        try:
            assert hasher._dummy is None
            stored = hasher.hash_sync("a long passphrase") if stored_is_known else None
            if stored_is_known:
                _verify(hasher, stored, "a long passphrase")
            else:
                with pytest.raises(InvalidCredentials):
                    _verify(hasher, stored, "a long passphrase")
            dummy = hasher._dummy
            assert dummy is not None
            assert not hasher.needs_rehash(dummy)  # same parameters as every real hash
        finally:
            hasher.close()
