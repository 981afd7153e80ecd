"""Schema-driven fuzzing: every operation of /openapi.json, valid and invalid inputs, no 5xx, answers as documented.

Schemathesis reads the app's own OpenAPI description and generates requests for each
operation — valid ones and deliberately invalid ones — against keyturn served by uvicorn
in this process (a real socket, so the HTTP layer is the one production runs). Every
request carries a fresh admin's Bearer token, so the protected operations are exercised
past authentication. Checks: no server error, a documented status code and content type,
a body matching the documented schema, and invalid input refused with a 4xx. Bounded to a
few dozen examples per operation so the whole run stays within about a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from keyturn.server.app import create_app
from keyturn.server.services import build_services
from keyturn.settings import load_settings
from tests.conftest import PASSWORD, run_async

pytestmark = pytest.mark.slow

ADMIN = "fuzz-admin@example.com"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


class Served:
    """keyturn on a free port, with an admin account to act as."""

    def __init__(self, data_dir: str) -> None:
        self.settings = load_settings(
            data_dir=data_dir,
            password_profile="test-only-cheap",
            # Fuzzing is about answers, not throttling: thousands of requests from one address.
            rate_limit_register="1000000/hour",
            rate_limit_refresh="1000000/minute",
            rate_limit_login_ip="1000000/minute",
        )
        self.app = create_app(self.settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        run_async(self._create_admin)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url)
        return self

    async def _create_admin(self) -> None:
        """The admin account, created the way `keyturn users create --role admin` does it."""
        services = build_services(self.settings)
        await services.start()
        try:
            await services.accounts.register(ADMIN, PASSWORD, roles=["admin", "user"])
        finally:
            await services.close()

    def __exit__(self, *_: object) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def admin_token(self) -> str:
        """A fresh admin session (earlier cases may have logged the previous one out)."""
        answer = self.http.post("/auth/login", json={"email": ADMIN, "password": PASSWORD})
        answer.raise_for_status()
        return str(answer.json()["data"]["access_token"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with Served(str(tmp_path_factory.mktemp("fuzz"))) as running:
        yield running


#: The schema comes from the app itself (building an app does no I/O); requests go to the served one.
schema = schemathesis.openapi.from_dict(
    create_app(load_settings(database_url="sqlite:///:memory:")).openapi(),
    # A body over the 64 KiB limit is refused with 413 before it is read: a rejection too.
    config=SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 409, 413, 422, 429]}}}
    ),
)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: Any, served: Served) -> None:
    """No 5xx, documented status and content type, schema-conformant bodies, invalid input refused."""
    headers = {"Authorization": f"Bearer {served.admin_token()}"}
    case.call_and_validate(base_url=served.url, headers=headers, checks=CHECKS)
