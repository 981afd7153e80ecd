"""keyturn's settings: ``KEYTURN_*`` environment variables, or the same keys in a TOML file.

Validated once, at start-up, into a frozen object; an unsafe combination raises
:class:`~keyturn.errors.ConfigurationError` with a sentence saying what to change
(CONTRACT.md §5). Nothing reads the environment after this.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from limits import parse as parse_rate_limit
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from keyturn.crypto.keys import ALGORITHMS, HMAC_ALGORITHMS, MIN_HMAC_SECRET_BYTES, symmetric_key_from_b64
from keyturn.durations import parse_duration
from keyturn.errors import ConfigurationError

__all__ = ["Settings", "load_settings", "parse_duration"]

CONFIG_FILE_ENV: Final = "KEYTURN_CONFIG_FILE"
#: The shortest audit retention accepted (one day): a trail kept for less is hardly one.
MIN_AUDIT_RETENTION: Final = 86400


Duration = Annotated[int, BeforeValidator(parse_duration)]


def _validate_rate(value: str) -> str:
    parse_rate_limit(value)
    return value


RateLimit = Annotated[str, BeforeValidator(_validate_rate)]


def _split_list(value: Any) -> Any:
    """A JSON list, or comma-separated text (``10.0.0.0/8, 192.168.1.2``)."""
    if not isinstance(value, str):
        return value
    if value.strip().startswith("["):
        return json.loads(value)
    return [item.strip() for item in value.split(",") if item.strip()]


def _validate_networks(entries: list[str]) -> list[str]:
    for entry in entries:
        ipaddress.ip_network(entry, strict=False)  # ValueError names the culprit
    return entries


#: Addresses or CIDR networks of the reverse proxies whose X-Forwarded-For is believed.
TrustedProxies = Annotated[list[str], NoDecode, BeforeValidator(_split_list), AfterValidator(_validate_networks)]


#: Same syntax as the admin API accepts (keyturn.domain.administration) and RFC 6749 §3.3 scope tokens:
#: a space in a scope would split it into two in the token's space-separated ``scope`` claim.
_ROLE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")
#: Names that would look like keyturn's secrets or a JWT (the audit trail refuses to record those).
_RESERVED_PREFIXES: Final = ("ktk_", "ktr_", "eyJ")


def _json_object(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _validate_role_map(roles: dict[str, list[str]]) -> dict[str, list[str]]:
    for role, scopes in roles.items():
        if not _ROLE_NAME.fullmatch(role) or role.startswith(_RESERVED_PREFIXES):
            raise ValueError(f"{role!r} is not a role name (letters, digits, _ . : -; not ktk_, ktr_, eyJ...)")
        for scope in scopes:
            if not _SCOPE_TOKEN.fullmatch(scope) or scope.startswith(_RESERVED_PREFIXES):
                raise ValueError(f"role {role!r}: {scope!r} is not a scope (printable ASCII, no spaces)")
    return roles


#: ``KEYTURN_ROLES``: role → the scopes it grants, as a JSON object (or a table in the config file).
RoleMap = Annotated[dict[str, list[str]], NoDecode, BeforeValidator(_json_object), AfterValidator(_validate_role_map)]


#: Connections per worker on PostgreSQL, unless ``KEYTURN_DB_POOL_SIZE`` says otherwise.
POSTGRESQL_POOL_SIZE: Final = 10
#: ... and on SQLite, which writes one transaction at a time whatever the pool: each
#: connection is a thread of aiosqlite's with its own memory (~0.5 MiB), and 5 against 10
#: served refreshes at 1.03x (0.996-1.07x) the rate with 4 MiB less per worker.
SQLITE_POOL_SIZE: Final = 5


def async_database_url(url: str) -> str:
    """Map the plain URLs of the contract to SQLAlchemy's async drivers."""
    for plain, driver in (
        ("sqlite:", "sqlite+aiosqlite:"),
        ("postgresql:", "postgresql+asyncpg:"),
        ("postgres:", "postgresql+asyncpg:"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    if url.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
        return url
    raise ConfigurationError("KEYTURN_DATABASE_URL must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


class Settings(BaseSettings):
    """Every knob of keyturn, with a safe default each."""

    model_config = SettingsConfigDict(env_prefix="KEYTURN_", frozen=True, extra="ignore")

    data_dir: Path = Path(".keyturn")
    database_url: str | None = None
    redis_url: str | None = None
    issuer: str = "http://127.0.0.1:8000"
    audience: str = "keyturn"
    algorithm: str = "ES256"
    secret: SecretStr | None = None
    access_ttl: Duration = 900
    refresh_ttl: Duration = 14 * 86400
    #: Revoke a session unused for this long; 0 disables the idle timeout.
    refresh_idle_ttl: Duration = 0
    leeway: Duration = 5
    refresh_grace: Duration = 10
    dev: bool = False
    cookie_secure: bool = True
    body_limit: int = Field(default=64 * 1024, ge=1024)
    password_profile: Literal["owasp", "test-only-cheap"] = "owasp"
    hash_concurrency: int | None = Field(default=None, ge=1)
    rate_limit_login: RateLimit = "5/15minutes"
    rate_limit_login_ip: RateLimit = "100/15minutes"
    rate_limit_register: RateLimit = "20/hour"
    rate_limit_refresh: RateLimit = "120/minute"
    rate_limit_token: RateLimit = "120/minute"
    roles: RoleMap = Field(default_factory=dict)
    default_roles: list[str] = Field(default_factory=lambda: ["user"])
    trusted_proxies: TrustedProxies = Field(default_factory=list)
    jwks_max_age: Duration = 300
    purge_interval: Duration = 3600
    #: Audit records older than this are deleted at each purge; 0 keeps them forever.
    audit_retention: Duration = 0
    key_encryption_key: SecretStr | None = None
    #: The key-encryption key being replaced: keys it sealed still open, and are re-sealed at start.
    key_encryption_key_previous: SecretStr | None = None
    token_encryption: Literal["none", "dir"] = "none"
    encryption_key: SecretStr | None = None
    #: The token-encryption key being replaced: access tokens it encrypted still verify.
    encryption_key_previous: SecretStr | None = None
    key_rotation_interval: Duration = 0
    #: Connections per worker; unset: :data:`SQLITE_POOL_SIZE` or :data:`POSTGRESQL_POOL_SIZE`.
    db_pool_size: int | None = Field(default=None, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    db_pool_timeout: float = Field(default=5.0, gt=0)
    #: Prefix of every Redis key and channel, so several deployments can share one Redis.
    redis_prefix: str = Field(default="keyturn:", min_length=1, max_length=64)
    #: Seconds between re-reads of recent revocations from the database (with Redis configured).
    revocation_sync_interval: float = Field(default=0.5, ge=0.05, le=5.0)
    #: When set, GET /metrics requires ``Authorization: Bearer <this>``.
    metrics_token: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    #: Seconds ``serve`` waits for in-flight requests after SIGTERM before closing them.
    shutdown_timeout: Duration = 30

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def async_database_url(self) -> str:
        return async_database_url(self.database_url or f"sqlite:///{self.data_dir / 'keyturn.db'}")

    @property
    def pool_size(self) -> int:
        """``db_pool_size``, or the default for the database in use."""
        if self.db_pool_size is not None:
            return self.db_pool_size
        return SQLITE_POOL_SIZE if self.async_database_url.startswith("sqlite") else POSTGRESQL_POOL_SIZE

    @property
    def is_hmac(self) -> bool:
        return self.algorithm in HMAC_ALGORITHMS

    def secret_bytes(self) -> bytes:
        return self.secret.get_secret_value().encode("utf-8") if self.secret else b""

    def scopes_for(self, roles: list[str] | tuple[str, ...]) -> list[str]:
        """The scopes granted by ``roles`` through ``KEYTURN_ROLES``, sorted and unique."""
        return sorted({scope for role in roles for scope in self.roles.get(role, [])})

    def check_safe(self) -> None:
        """Raise :class:`ConfigurationError` for any dangerous combination (CONTRACT.md §5)."""
        for rule in (_check_algorithm, _check_secret, _check_cookies, _check_encryption, _check_ttls):
            rule(self)


def _check_algorithm(s: Settings) -> None:
    if s.algorithm not in ALGORITHMS:
        raise ConfigurationError(
            f"KEYTURN_ALGORITHM={s.algorithm!r} is not allowed; choose one of {', '.join(sorted(ALGORITHMS))}"
        )


def _check_secret(s: Settings) -> None:
    if s.is_hmac and len(s.secret_bytes()) < MIN_HMAC_SECRET_BYTES:
        raise ConfigurationError(
            f"KEYTURN_ALGORITHM={s.algorithm} needs KEYTURN_SECRET of at least {MIN_HMAC_SECRET_BYTES} bytes"
        )


def _check_cookies(s: Settings) -> None:
    if not s.cookie_secure and not s.dev:
        raise ConfigurationError("KEYTURN_COOKIE_SECURE=false is only allowed with KEYTURN_DEV=true")


def _check_encryption(s: Settings) -> None:
    if s.token_encryption == "dir" and s.encryption_key is None:
        raise ConfigurationError("KEYTURN_TOKEN_ENCRYPTION=dir needs a 32-byte KEYTURN_ENCRYPTION_KEY (base64url)")
    if s.encryption_key_previous is not None and (s.token_encryption != "dir" or s.encryption_key is None):
        raise ConfigurationError(
            "KEYTURN_ENCRYPTION_KEY_PREVIOUS needs KEYTURN_TOKEN_ENCRYPTION=dir and KEYTURN_ENCRYPTION_KEY"
        )
    if s.key_encryption_key_previous is not None and s.key_encryption_key is None:
        raise ConfigurationError(
            "KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS needs KEYTURN_KEY_ENCRYPTION_KEY: the keys are re-sealed with it"
        )
    # Decoded here, once, so a malformed key refuses to start instead of failing on first use.
    for name, value in (
        ("KEYTURN_ENCRYPTION_KEY", s.encryption_key),
        ("KEYTURN_ENCRYPTION_KEY_PREVIOUS", s.encryption_key_previous),
        ("KEYTURN_KEY_ENCRYPTION_KEY", s.key_encryption_key),
        ("KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS", s.key_encryption_key_previous),
    ):
        if value is not None:
            symmetric_key_from_b64(value.get_secret_value(), purpose=name)


def _check_ttls(s: Settings) -> None:
    if s.access_ttl < 1 or s.refresh_ttl < s.access_ttl:
        raise ConfigurationError("KEYTURN_ACCESS_TTL must be positive and not longer than KEYTURN_REFRESH_TTL")
    if 0 < s.audit_retention < MIN_AUDIT_RETENTION:
        raise ConfigurationError("KEYTURN_AUDIT_RETENTION must be 0 (keep every record) or at least 1d")
    if s.refresh_grace > 300:
        raise ConfigurationError("KEYTURN_REFRESH_GRACE over 300 seconds defeats reuse detection")
    if s.refresh_idle_ttl < 0 or 0 < s.refresh_idle_ttl <= s.access_ttl:
        raise ConfigurationError(
            "KEYTURN_REFRESH_IDLE_TTL must be 0 (off) or longer than KEYTURN_ACCESS_TTL: clients refresh"
            " only when their access token expires, so a shorter idle timeout ends every session"
        )


def load_settings(**overrides: Any) -> Settings:
    """Read, validate and safety-check the settings; raise :class:`ConfigurationError` if unsafe."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"KEYTURN_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(problems) from None
    settings.check_safe()
    return settings
