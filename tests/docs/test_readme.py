"""The README's walkthrough works as written, against a real `keyturn serve` process."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process import keyturn_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A real server, as `make run` starts it, on a free loopback port."""
    with keyturn_server({"KEYTURN_DATA_DIR": str(tmp_path / "data")}, tmp_path / "server.log") as base:
        yield base


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## Walkthrough.*?```sh\n(.*?)```", readme, re.S)
    assert match, "the README has no walkthrough block"
    return match.group(1)


@pytest.mark.slow
def test_readme_walkthrough_works_as_written(server: str, tmp_path: Path) -> None:
    """Each command of the walkthrough runs, and the story ends with TOKEN_REVOKED."""
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for the README walkthrough")
    script = walkthrough().replace("http://127.0.0.1:8000", server)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"email":"alice@example.com"' in out
    assert '"revoked":1' in out
    assert out.rstrip().endswith(
        '{"success":false,"error":{"code":"TOKEN_REVOKED","message":"The token has been revoked."}}'
    )
    assert not list(tmp_path.glob("*.json"))
