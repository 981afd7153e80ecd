"""The public surface is explicit: what is exported is deliberate, and typed (py.typed)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import keyturn

PUBLIC_MODULES = [
    "keyturn",
    "keyturn.errors",
    "keyturn.envelope",
    "keyturn.clock",
    "keyturn.settings",
    "keyturn.crypto.keys",
    "keyturn.crypto.access_tokens",
    "keyturn.crypto.opaque",
    "keyturn.crypto.passwords",
    "keyturn.domain.authorization",
    "keyturn.guard",
    "keyturn.testing",
    "keyturn.durations",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_exist(name: str) -> None:
    """Every name in a module's __all__ is really defined there."""
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} declares no __all__"
    for member in exported:
        assert hasattr(module, member), f"{name}.{member} is exported but missing"


def test_top_level_exports_errors_and_clock() -> None:
    """The package root exports the error tree and the clock, nothing private."""
    assert all(not name.startswith("_") or name == "__version__" for name in keyturn.__all__)
    assert {"KeyturnError", "TokenInvalid", "Clock", "FrozenClock"} <= set(keyturn.__all__)


def test_package_is_typed() -> None:
    """PEP 561: the package ships py.typed, so users' type checkers read our annotations."""
    assert (Path(keyturn.__file__).parent / "py.typed").is_file()
