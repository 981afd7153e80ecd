"""docs/deploy.md stays true to the code: every variable it names exists, every series it lists is exported."""

from __future__ import annotations

import re
from pathlib import Path

from keyturn.server import observability
from keyturn.settings import Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
#: Read by the CLI rather than by Settings.
CLI_ONLY = {"KEYTURN_WORKERS"}


def test_every_variable_in_the_deploy_guide_is_a_setting() -> None:
    """Each KEYTURN_* the guide names is a field of Settings (or a CLI option)."""
    named = set(re.findall(r"KEYTURN_[A-Z_]+[A-Z]", DOC)) - CLI_ONLY
    fields = {f"KEYTURN_{name.upper()}" for name in Settings.model_fields}
    assert named - fields == set()


def test_every_series_in_the_deploy_guide_is_exported() -> None:
    """Each keyturn_ series the guide lists is one the server defines."""
    listed = set(re.findall(r"^\| `(keyturn_[a-z_]+)`", DOC, re.M))
    defined = {
        metric._name + ("_total" if metric._type == "counter" else "")  # prometheus_client has no public name
        for metric in (
            observability.REQUESTS,
            observability.LATENCY,
            observability.LOGINS,
            observability.REFRESHES,
            observability.REUSE_DETECTED,
            observability.RATE_LIMITED,
        )
    }
    assert listed == defined
