"""Structured logs: a request id on every request and log line, JSON lines, and no secrets in them."""

from __future__ import annotations

import json
import logging
import logging.config
import re
from typing import Any

import httpx
import pytest

from keyturn.server.observability import JsonFormatter, RequestIdFilter, logging_config, request_id_var
from tests.conftest import PASSWORD, bearer, login, register

pytestmark = pytest.mark.anyio

MINTED = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def backend() -> str:
    """Logging does not depend on the database; one is enough."""
    return "sqlite"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (None, False),
        ("req-42.abc:7", True),
        ("has space", False),
        ("x" * 129, False),
        ('"quoted"', False),
    ],
    ids=["none", "sane", "space", "too-long", "quote"],
)
async def test_request_id_is_echoed_when_sane_and_minted_otherwise(
    client: httpx.AsyncClient, sent: str | None, kept: bool
) -> None:
    """A sane incoming X-Request-ID is kept (a balancer's id joins the logs); anything else is replaced."""
    headers = {"X-Request-ID": sent} if sent is not None else {}
    response = await client.get("/healthz", headers=headers)
    echoed = response.headers["x-request-id"]
    assert echoed == sent if kept else MINTED.match(echoed)


def formatted(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in records]


async def test_access_log_line_is_json_with_request_id_and_no_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """One JSON access line per request, with its request id, route and status; no token, password or query."""
    await register(client)
    tokens = await login(client)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="keyturn.access"):
        response = await client.post(
            "/auth/refresh?leak=query-string-secret",
            json={"refresh_token": tokens["refresh_token"]},
            headers={**bearer(tokens["access_token"]), "X-Request-ID": "trace-me-1"},
        )
    assert response.status_code == 200
    lines = formatted([r for r in caplog.records if r.name == "keyturn.access"])
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "trace-me-1" == response.headers["x-request-id"]
    assert (line["method"], line["route"], line["status"]) == ("POST", "/auth/refresh", 200)
    assert (line["level"], line["message"]) == ("info", "request")
    assert line["duration_ms"] >= 0
    text = json.dumps(lines)
    for secret in (tokens["refresh_token"], tokens["access_token"], "query-string-secret", PASSWORD):
        assert secret not in text


def test_log_lines_written_during_a_request_carry_its_id() -> None:
    """Any log line written while a request is handled gets that request's id, stamped when it is written."""
    record = logging.LogRecord("keyturn", logging.WARNING, __file__, 1, "purge skipped %s", ("now",), None)
    token = request_id_var.set("rid-7")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry == {
        **entry,
        "request_id": "rid-7",
        "level": "warning",
        "logger": "keyturn",
        "message": "purge skipped now",
    }


def test_json_lines_carry_extra_fields_and_exceptions() -> None:
    """``extra`` fields become JSON members; an exception is rendered into one member, on one line."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("keyturn", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    record.rows = 3
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["rows"] == 3
    assert "ValueError: boom" in entry["exc_info"]
    assert "request_id" not in entry


def test_logging_config_is_accepted_by_dictconfig() -> None:
    """The config handed to uvicorn is valid for both formats."""
    for fmt in ("json", "text"):
        config = logging_config(level="warning", fmt=fmt)
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        try:
            logging.config.dictConfig(config)
            assert root.level == logging.WARNING
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
