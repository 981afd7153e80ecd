"""What a resource server installs and imports: the guard core pulls in no server stack and no framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

import keyturn.guard

# Heavy or foreign packages a resource server must not get from `import keyturn.guard`.
FORBIDDEN = [
    "fastapi",
    "starlette",
    "flask",
    "werkzeug",
    "pydantic",
    "pydantic_settings",
    "sqlalchemy",
    "alembic",
    "argon2",
    "redis",
    "keyturn.settings",
    "keyturn.server",
    "keyturn.store",
    "keyturn.domain.sessions",
    "keyturn.domain.accounts",
]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "statement",
    ["import keyturn.guard", "from keyturn.guard import Guard; Guard(issuer='https://a.test')"],
    ids=["import", "construct"],
)
def test_guard_core_imports_no_server_stack_and_no_framework(statement: str) -> None:
    """Importing and building a Guard loads none of the server's or the frameworks' packages."""
    loaded = _loaded_after(statement)
    assert not {m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}


def test_public_surface_is_explicit() -> None:
    """Everything in keyturn.guard.__all__ exists, and the main names are there."""
    for name in keyturn.guard.__all__:
        assert hasattr(keyturn.guard, name), name
    assert {"Guard", "Principal", "GuardMiddleware", "TokenInvalid", "TokenExpired", "Forbidden"} <= set(
        keyturn.guard.__all__
    )


def test_adapters_load_their_framework_only_when_asked() -> None:
    """guard.require() brings in FastAPI, guard.flask_required() brings in Flask; neither loads the other."""
    fastapi_side = _loaded_after("from keyturn.guard import Guard; Guard(issuer='https://a.test').require()")
    flask_side = _loaded_after("from keyturn.guard import Guard; Guard(issuer='https://a.test').flask_required()")
    assert "fastapi" in fastapi_side
    assert "flask" not in fastapi_side
    assert "flask" in flask_side
    assert "fastapi" not in flask_side
