"""The ``keyturn`` command: serve, migrate, users, token. Same settings as the server."""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from keyturn.domain.audit import AuditEvent
from keyturn.domain.identity import normalise_email
from keyturn.errors import ConfigurationError, KeyturnError, ValidationFailed
from keyturn.settings import Settings, load_settings

if TYPE_CHECKING:
    from keyturn.crypto.keys import SigningKey
    from keyturn.domain.audit import BrokenLink
    from keyturn.domain.models import User
    from keyturn.server.services import Services

__all__ = ["main"]

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        raise click.ClickException(f"unsafe or invalid configuration: {exc}") from None


def _run(work: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``work(services)`` against the configured database, then close it."""
    from keyturn.server.services import build_services  # noqa: PLC0415 - server stack only when needed

    async def main() -> T:
        services = build_services(_settings())
        try:
            await services.start()
            return await work(services)
        finally:
            await services.close()

    try:
        return asyncio.run(main())
    except ValidationFailed as exc:
        details = "; ".join(f"{k} {v}" for k, v in exc.fields.items())
        raise click.ClickException(f"{exc.message} {details}".strip()) from None
    except KeyturnError as exc:
        raise click.ClickException(exc.message) from None
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


async def _audit_roles(services: Services, event: str, user: User) -> None:
    """Audit an account change made from the command line (no actor: whoever ran the CLI)."""
    await services.audit.record(
        event, user_id=user.id, email=user.email, detail={"roles": list(user.roles), "via": "cli"}
    )


@click.group()
@click.version_option(package_name="keyturn")
def main() -> None:
    """keyturn: JWT authentication server and tools."""


def _prepare_multiprocess_metrics() -> None:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory, so /metrics sums every worker.

    prometheus_client needs a clean directory per run: an operator-chosen one is
    emptied of old ``*.db`` files; otherwise a private temporary one is made and
    removed at exit.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return
    path = Path(tempfile.mkdtemp(prefix="keyturn-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    atexit.register(shutil.rmtree, path, True)


def _check_app_in_child() -> None:
    """Build the app once in a short-lived child process: refuse to start, clearly, if that fails.

    With ``--workers N`` the supervisor process only forks and watches the workers, which
    build the app themselves; a setting the app refuses would otherwise fail every worker,
    over and over. Building it here in the supervisor would keep the whole server stack in
    its memory for nothing (~100 MiB, as much as a worker; docs/performance.md), so a child
    builds it, reports, and exits.
    """
    check = subprocess.run(
        [sys.executable, "-c", "from keyturn.cli import _build_app; _build_app()"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode == _REFUSED:
        raise click.ClickException(check.stderr.strip())
    if check.returncode != 0:
        raise click.ClickException(f"the server could not be built: {check.stderr.strip()[-2000:]}")


#: The exit status of :func:`_build_app` for a refused configuration (its message on stderr).
_REFUSED = 3


def _build_app() -> None:
    """The child of :func:`_check_app_in_child`: build the app from the environment, serve nothing."""
    from keyturn.server.app import create_app  # noqa: PLC0415

    try:
        create_app(load_settings())
    except ConfigurationError as exc:
        sys.stderr.write(str(exc))
        raise SystemExit(_REFUSED) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    envvar="KEYTURN_WORKERS",
    type=click.IntRange(1, 256),
    help="Worker processes on the one port (env KEYTURN_WORKERS); a dead worker is replaced.",
)
def serve(host: str, port: int, workers: int) -> None:
    """Run the auth server (migrates the database on start, under a lock).

    SIGTERM stops accepting connections, lets in-flight requests finish (up to
    KEYTURN_SHUTDOWN_TIMEOUT seconds), then exits. SIGHUP restarts the workers one by one.
    """
    import uvicorn  # noqa: PLC0415

    if workers > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _prepare_multiprocess_metrics()  # before anything imports prometheus_client
    from keyturn.server.observability import logging_config  # noqa: PLC0415

    settings = _settings()
    if settings.dev:
        click.echo(
            "keyturn: DEVELOPMENT MODE - cookies may be sent over plain http. Never use this in production.", err=True
        )
    if settings.password_profile != "owasp":
        click.echo(f"keyturn: password profile {settings.password_profile!r} is for tests only.", err=True)
    if workers > 1 and settings.redis_url is None:
        click.echo("keyturn: without KEYTURN_REDIS_URL each worker keeps its own rate-limit counters.", err=True)
    target: Any = "keyturn.server.app:create_app"  # each worker builds its own
    if workers > 1:
        _check_app_in_child()
    else:
        from keyturn.server.app import create_app  # noqa: PLC0415

        try:
            target = create_app(settings)  # fails here, with a clear message, on settings the app refuses
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None
    uvicorn.run(
        target,
        factory=workers > 1,
        host=host,
        port=port,
        workers=workers,
        log_config=logging_config(level=settings.log_level, fmt=settings.log_format),
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        ws="none",  # keyturn serves no WebSocket: leave the websockets package (~1 MiB per worker) unloaded
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )


@main.command()
def migrate() -> None:
    """Apply database migrations (serve also does this on start)."""

    async def work(services: Services) -> None:
        return None

    _run(work)
    click.echo("database is up to date")


@main.group()
def users() -> None:
    """Manage accounts."""


@users.command("create")
@click.argument("email")
@click.option("--role", "roles", multiple=True, help="Role to grant (repeatable).")
@click.option("--name", default=None, help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(email: str, roles: tuple[str, ...], name: str | None, password_stdin: bool) -> None:
    """Create an account with EMAIL (the password is prompted for, or read from stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def work(services: Services) -> User:
        user = await services.accounts.register(email, password, name, roles=roles)
        await _audit_roles(services, AuditEvent.REGISTERED, user)
        return user

    user = _run(work)
    click.echo(f"created {user.id} {user.email} roles={','.join(user.roles)}")


@users.command("list")
@click.option("--limit", default=1000, show_default=True, help="At most this many.")
def users_list(limit: int) -> None:
    """List accounts: id, e-mail, roles, disabled."""

    async def work(services: Services) -> list[User]:
        found: list[User] = []
        after = None
        while len(found) < limit:
            page = await services.users.page(after=after, limit=min(200, limit - len(found)))
            if not page:
                break
            found.extend(page)
            after = page[-1].id
        return found

    for user in _run(work):
        flag = " disabled" if user.disabled else ""
        click.echo(f"{user.id}  {user.email}  roles={','.join(user.roles)}{flag}")


@users.command("set-roles")
@click.argument("email")
@click.argument("roles", nargs=-1)
def users_set_roles(email: str, roles: tuple[str, ...]) -> None:
    """Replace the roles of EMAIL with ROLES (none: no roles). Removing a role ends the user's sessions."""

    async def work(services: Services) -> User:
        stored = await services.users.by_email(normalise_email(email))
        if stored is None:
            raise click.ClickException(f"no account with the e-mail {email}")
        user = await services.admin.update(stored.user.id, roles=roles)
        await _audit_roles(services, AuditEvent.ROLES_CHANGED, user)
        return user

    user = _run(work)
    click.echo(f"{user.id} {user.email} roles={','.join(user.roles)}")


@main.group()
def keys() -> None:
    """Manage the signing keys (the key ring in the database)."""


@keys.command("rotate")
@click.option(
    "--compromised",
    is_flag=True,
    help="After an incident: use a fresh key (not the pre-published one) and drop every old key at once.",
)
def keys_rotate(compromised: bool) -> None:
    """Make a new key sign; old tokens keep verifying until they expire. Running servers follow within seconds."""

    async def work(services: Services) -> SigningKey:
        key = await services.keys.rotate(compromised=compromised)
        await services.audit.record(
            AuditEvent.KEY_ROTATED, detail={"kid": key.kid, "alg": key.alg, "compromised": compromised}
        )
        return key

    key = _run(work)
    click.echo(f"rotated: {key.kid} ({key.alg}) signs now")


@keys.command("list")
def keys_list() -> None:
    """List the keys: state, kid, algorithm, since when, and when a retired key leaves the JWKS."""
    from keyturn.server.schemas import iso  # noqa: PLC0415

    async def work(services: Services) -> list[SigningKey]:
        ring = await services.keys.reload()
        return ring.published(services.clock.now())

    for key in _run(work):
        drop = iso(key.drop_after) or "-"
        click.echo(f"{key.state:<8} {key.kid}  {key.alg:<6} since={iso(key.created_at)}  drop_after={drop}")


@main.group()
def audit() -> None:
    """Check and read the audit trail."""


@audit.command("verify")
def audit_verify() -> None:
    """Walk the hash chain; exit 1 naming the first record that was edited or whose predecessor was deleted."""

    async def work(services: Services) -> tuple[int, BrokenLink | None, str]:
        return await services.audit.verify()

    count, broken, head = _run(work)
    if broken is not None:
        raise click.ClickException(f"audit chain BROKEN after {count} intact records: {broken.describe()}")
    click.echo(f"audit chain intact: {count} records, head {head}")


@audit.command("tail")
@click.option("-n", "count", default=20, show_default=True, type=click.IntRange(0, 100_000), help="Records to show.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records as they are written.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 60), help="Poll seconds.")
def audit_tail(count: int, follow: bool, interval: float) -> None:
    """Print the newest records as JSON lines, oldest first (with --follow, then every new one)."""

    async def work(services: Services) -> None:
        last = 0
        for record in await services.audit.latest(count) if count else []:
            click.echo(json.dumps(record.as_dict(), sort_keys=True))
            last = record.id
        if not count:
            last = max((r.id for r in await services.audit.latest(1)), default=0)
        while follow:
            for record in await services.audit.after(last, 500):
                click.echo(json.dumps(record.as_dict(), sort_keys=True))
                last = record.id
            await asyncio.sleep(interval)

    with contextlib.suppress(KeyboardInterrupt):
        _run(work)


@main.group()
def token() -> None:
    """Inspect tokens."""


def _b64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@token.command("decode")
@click.argument("value")
def token_decode(value: str) -> None:
    """Print a token's header and claims. NOT verified: never trust what this prints."""
    parts = value.strip().split(".")
    click.echo("WARNING: decoded WITHOUT verification - the signature was not checked.", err=True)
    try:
        header = _b64json(parts[0])
        if len(parts) == 5:
            click.echo(json.dumps({"header": header, "claims": "(encrypted: needs the decryption key)"}, indent=2))
            return
        if len(parts) != 3:
            raise ValueError("not a compact JWS")
        click.echo(json.dumps({"header": header, "claims": _b64json(parts[1])}, indent=2, sort_keys=True))
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"not a JWT: {exc.__class__.__name__}") from None
