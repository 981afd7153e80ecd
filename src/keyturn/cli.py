"""The ``keyturn`` command: serve, migrate, users, token. Same settings as the server."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from keyturn.errors import ConfigurationError, KeyturnError, ValidationFailed
from keyturn.settings import Settings, load_settings

__all__ = ["main"]

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        raise click.ClickException(f"unsafe or invalid configuration: {exc}") from None


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
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


@click.group()
@click.version_option(package_name="keyturn")
def main() -> None:
    """keyturn: JWT authentication server and tools."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
def serve(host: str, port: int) -> None:
    """Run the auth server (migrates the database on start)."""
    import uvicorn  # noqa: PLC0415

    from keyturn.server.app import create_app  # noqa: PLC0415

    settings = _settings()
    if settings.dev:
        click.echo(
            "keyturn: DEVELOPMENT MODE - cookies may be sent over plain http. Never use this in production.", err=True
        )
    if settings.password_profile != "owasp":
        click.echo(f"keyturn: password profile {settings.password_profile!r} is for tests only.", err=True)
    try:
        app = create_app(settings)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False)


@main.command()
def migrate() -> None:
    """Apply database migrations (serve also does this on start)."""

    async def work(services: Any) -> None:
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

    async def work(services: Any) -> Any:
        return await services.accounts.register(email, password, name, roles=roles)

    user = _run(work)
    click.echo(f"created {user.id} {user.email} roles={','.join(user.roles)}")


@users.command("list")
@click.option("--limit", default=1000, show_default=True, help="At most this many.")
def users_list(limit: int) -> None:
    """List accounts: id, e-mail, roles, disabled."""

    async def work(services: Any) -> list[Any]:
        found: list[Any] = []
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
