"""GET /metrics: keyturn_ series in the Prometheus text format, labelled by route template and outcome."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORD, ClientFactory, SettingsFactory, assert_error, bearer, login, register

pytestmark = pytest.mark.anyio

Labels = dict[str, str]


@pytest.fixture
def backend() -> str:
    """Metrics do not depend on the database; one is enough."""
    return "sqlite"


async def scrape(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (name, labels)."""
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_requests_are_counted_by_route_template_method_and_status(client: httpx.AsyncClient) -> None:
    """Requests count under their route template (never the raw path); unknown paths share one label."""
    await register(client)
    tokens = await login(client)
    before = await scrape(client)
    session_id = str(uuid.uuid4())
    await client.delete(f"/auth/sessions/{session_id}", headers=bearer(tokens["access_token"]))
    await client.get(f"/no/such/{session_id}")
    after = await scrape(client)

    template = {"route": "/auth/sessions/{session_id}", "method": "DELETE", "status": "404"}
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    for labels in (template, unmatched):
        assert (
            value(after, "keyturn_http_requests_total", **labels)
            - value(before, "keyturn_http_requests_total", **labels)
            == 1
        )
    assert not any(session_id in str(key) for key in after)
    count = "keyturn_http_request_duration_seconds_count"
    assert value(after, count, route="/auth/sessions/{session_id}") > value(
        before, count, route="/auth/sessions/{session_id}"
    )


async def test_logins_are_counted_by_outcome(client: httpx.AsyncClient) -> None:
    """A good and a bad password count as success and invalid_credentials."""
    await register(client)
    before = await scrape(client)
    await login(client)
    bad = await client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD + "!"})
    assert_error(bad, 401, "INVALID_CREDENTIALS")
    after = await scrape(client)
    for outcome in ("success", "invalid_credentials"):
        delta = value(after, "keyturn_logins_total", outcome=outcome) - value(
            before, "keyturn_logins_total", outcome=outcome
        )
        assert delta == 1, outcome


async def test_refreshes_and_reuse_detection_are_counted(client: httpx.AsyncClient, clock: object) -> None:
    """A rotation counts as success; a replay after the grace window as token_reused and as a reuse detection."""
    await register(client)
    first = (await login(client))["refresh_token"]
    before = await scrape(client)
    assert (await client.post("/auth/refresh", json={"refresh_token": first})).status_code == 200
    clock.advance(60)  # type: ignore[attr-defined]
    assert_error(await client.post("/auth/refresh", json={"refresh_token": first}), 401, "TOKEN_REUSED")
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("keyturn_refreshes_total", outcome="success") == 1
    assert delta("keyturn_refreshes_total", outcome="token_reused") == 1
    assert delta("keyturn_refresh_reuse_detected_total") == 1


async def test_rate_limited_requests_are_counted(make_settings: SettingsFactory, make_client: ClientFactory) -> None:
    """A 429 counts under keyturn_rate_limited_total."""
    async with make_client(make_settings(rate_limit_register="1/hour")) as client:
        before = await scrape(client)
        await register(client)
        refused = await client.post("/auth/register", json={"email": "bob@example.com", "password": PASSWORD})
        assert_error(refused, 429, "RATE_LIMITED")
        after = await scrape(client)
    limited = {key: after[key] - before.get(key, 0.0) for key in after if key[0] == "keyturn_rate_limited_total"}
    assert sum(limited.values()) == 1


@pytest.mark.parametrize(
    ("sent", "status"),
    [(None, 401), ("wrong-token-wrong-token", 401), ("metrics-token-for-the-tests", 200)],
    ids=["none", "wrong", "right"],
)
async def test_metrics_token_guards_the_endpoint_when_configured(
    make_settings: SettingsFactory, make_client: ClientFactory, sent: str | None, status: int
) -> None:
    """With KEYTURN_METRICS_TOKEN set, /metrics answers only to that Bearer token."""
    async with make_client(make_settings(metrics_token="metrics-token-for-the-tests")) as client:
        response = await client.get("/metrics", headers=bearer(sent) if sent else None)
    if status == 401:
        assert_error(response, 401, "UNAUTHORIZED")
    else:
        assert response.status_code == 200
        assert "keyturn_http_requests_total" in response.text


async def test_metrics_endpoint_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    """/metrics is operational plumbing, kept out of the API description."""
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]
