"""Settings: parsed once from KEYTURN_*, safe by default, unsafe combinations refused loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

from keyturn.errors import ConfigurationError
from keyturn.server.services import build_services
from keyturn.settings import async_database_url, load_settings, parse_duration


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(90, 90), ("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("14d", 1209600)],
    ids=["int", "digits", "seconds", "minutes", "hours", "days"],
)
def test_durations(raw: int | str, seconds: int) -> None:
    """Durations are seconds, or a number with a unit."""
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize(
    "raw", ["15 minutes", "-5", "1.5h", "", True], ids=["words", "negative", "float", "empty", "bool"]
)
def test_bad_durations_are_refused(raw: object) -> None:
    """Anything else is a configuration error, not a silent default."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(raw)


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of the box: asymmetric ES256, 15-minute tokens, 14-day sessions, OWASP hashing, Secure cookies."""
    for var in ("KEYTURN_ALGORITHM", "KEYTURN_DEV", "KEYTURN_ACCESS_TTL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert (s.algorithm, s.access_ttl, s.refresh_ttl, s.password_profile) == ("ES256", 900, 1209600, "owasp")
    assert s.cookie_secure
    assert not s.dev
    assert s.refresh_grace == 10
    assert s.body_limit == 65536
    assert s.data_dir == Path(".keyturn")


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """KEYTURN_* variables configure the server, durations with units included."""
    monkeypatch.setenv("KEYTURN_ACCESS_TTL", "5m")
    monkeypatch.setenv("KEYTURN_ROLES", '{"admin": ["users:write"]}')
    s = load_settings()
    assert s.access_ttl == 300
    assert s.scopes_for(["admin", "user"]) == ["users:write"]


def test_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same keys can live in a TOML file named by KEYTURN_CONFIG_FILE; the environment wins."""
    config = tmp_path / "keyturn.toml"
    config.write_text('issuer = "https://auth.example.com"\naccess_ttl = "10m"\n')
    monkeypatch.setenv("KEYTURN_CONFIG_FILE", str(config))
    monkeypatch.setenv("KEYTURN_ACCESS_TTL", "120")
    s = load_settings()
    assert s.issuer == "https://auth.example.com"
    assert s.access_ttl == 120


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"algorithm": "none"}, "not allowed"),
        ({"algorithm": "NONE"}, "not allowed"),
        ({"algorithm": "HS256"}, "KEYTURN_SECRET"),
        ({"algorithm": "HS256", "secret": "too short"}, "at least 32 bytes"),
        ({"cookie_secure": False}, "KEYTURN_DEV"),
        ({"token_encryption": "dir"}, "KEYTURN_ENCRYPTION_KEY"),
        ({"access_ttl": 0}, "positive"),
        ({"refresh_grace": 3600}, "reuse detection"),
        ({"rate_limit_login": "lots"}, "RATE_LIMIT_LOGIN"),
    ],
    ids=[
        "none",
        "none-upper",
        "hmac-without-secret",
        "short-secret",
        "insecure-cookies",
        "jwe-without-key",
        "zero-ttl",
        "huge-grace",
        "bad-rate",
    ],
)
def test_dangerous_combinations_refuse_to_start(overrides: dict[str, object], message: str) -> None:
    """An unsafe setting is refused with a sentence that says what to change."""
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**overrides)


def test_insecure_cookies_allowed_in_development() -> None:
    """Only KEYTURN_DEV=true may drop the Secure attribute."""
    assert not load_settings(cookie_secure=False, dev=True).cookie_secure


@pytest.mark.parametrize(
    ("plain", "driver"),
    [
        ("sqlite:///data/k.db", "sqlite+aiosqlite:///data/k.db"),
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
    ids=["sqlite", "postgresql", "postgres"],
)
def test_database_urls_choose_the_async_driver(plain: str, driver: str) -> None:
    """Users write plain URLs; choosing the async driver is keyturn's business."""
    assert async_database_url(plain) == driver


def test_unknown_database_is_refused() -> None:
    """A database keyturn does not support is a clear configuration error."""
    with pytest.raises(ConfigurationError, match="KEYTURN_DATABASE_URL"):
        async_database_url("mysql://root@localhost/db")


@pytest.mark.parametrize(
    ("url", "override", "expected"),
    [
        ("sqlite:///{tmp}/keyturn.db", None, 5),
        ("postgresql://postgres@127.0.0.1:5432/test", None, 10),
        ("sqlite:///{tmp}/keyturn.db", 12, 12),
        ("postgresql://postgres@127.0.0.1:5432/test", 3, 3),
    ],
    ids=["sqlite-default", "postgresql-default", "sqlite-set", "postgresql-set"],
)
def test_pool_size_follows_the_database_unless_set(
    tmp_path: Path, url: str, override: int | None, expected: int
) -> None:
    """SQLite keeps 5 connections per worker (it writes one transaction at a time), PostgreSQL 10.

    Checked on the engine the server builds; ``KEYTURN_DB_POOL_SIZE`` wins over either.
    """
    settings = load_settings(data_dir=tmp_path / "data", database_url=url.format(tmp=tmp_path), db_pool_size=override)
    pool = build_services(settings).db.engine.pool  # no I/O yet: nothing to close
    assert isinstance(pool, QueuePool)
    assert pool.size() == expected
