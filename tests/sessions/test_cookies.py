"""Cookie mode (CONTRACT.md §4): an HttpOnly refresh cookie on /auth, a readable CSRF cookie, double submit."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from keyturn.clock import FrozenClock
from keyturn.errors import ConfigurationError
from keyturn.server.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from keyturn.settings import load_settings
from tests.conftest import PASSWORD, ClientFactory, SettingsFactory, assert_error, bearer, register
from tests.sessions.helpers import SetCookie, is_alive, set_cookies

pytestmark = pytest.mark.anyio


@pytest.fixture
def backend() -> str:
    """Cookies and CSRF are HTTP-layer logic over the same domain: one database is enough."""
    return "sqlite"


async def _cookie_login(client: httpx.AsyncClient) -> tuple[httpx.Response, dict[str, SetCookie]]:
    response = await client.post(
        "/auth/login", json={"email": "alice@example.com", "password": PASSWORD, "session": "cookie"}
    )
    assert response.status_code == 200, response.text
    client.cookies.clear()  # every request below states its cookies explicitly
    return response, set_cookies(response)


def _cookie_header(refresh: str | None, csrf: str | None) -> dict[str, str]:
    parts = [f"{REFRESH_COOKIE}={refresh}"] if refresh else []
    parts += [f"{CSRF_COOKIE}={csrf}"] if csrf else []
    return {"Cookie": "; ".join(parts)} if parts else {}


async def _post(
    client: httpx.AsyncClient, path: str, cookies: dict[str, SetCookie], csrf_header: str | None, **headers: str
) -> httpx.Response:
    sent = _cookie_header(cookies[REFRESH_COOKIE].value, cookies[CSRF_COOKIE].value) | headers
    if csrf_header is not None:
        sent[CSRF_HEADER] = csrf_header
    response = await client.post(path, headers=sent)
    client.cookies.clear()
    return response


async def test_cookie_login_sets_the_contract_attributes(client: httpx.AsyncClient) -> None:
    """The refresh token travels only in an HttpOnly; Secure; SameSite=Strict; Path=/auth cookie,
    never in the body; a readable CSRF cookie sits beside it."""
    await register(client)
    response, cookies = await _cookie_login(client)
    body = response.json()["data"]
    assert "refresh_token" not in body
    assert body["refresh_expires_in"] == 14 * 86400
    assert cookies[REFRESH_COOKIE].value not in response.text
    refresh = cookies[REFRESH_COOKIE]
    assert refresh.value.startswith("ktr_")
    assert refresh.flags == {"httponly", "secure"}
    assert refresh.attributes["path"] == "/auth"
    assert refresh.attributes["samesite"].lower() == "strict"
    assert refresh.attributes["max-age"] == str(14 * 86400)
    csrf = cookies[CSRF_COOKIE]
    assert csrf.flags == {"secure"}
    assert csrf.attributes["samesite"].lower() == "strict"
    assert len(csrf.value) >= 43
    assert await is_alive(client, body["access_token"])


@pytest.mark.parametrize(
    ("csrf", "outcome"),
    [
        (None, "CSRF_FAILED"),
        ("", "CSRF_FAILED"),
        ("wrong", "CSRF_FAILED"),
        ("cookie-minus-one", "CSRF_FAILED"),
        ("cookie", "OK"),
    ],
    ids=["missing", "empty", "wrong", "near-miss", "right"],
)
async def test_cookie_refresh_needs_the_csrf_header(client: httpx.AsyncClient, csrf: str | None, outcome: str) -> None:
    """A cookie refresh must echo the CSRF cookie in X-CSRF-Token; a refusal spends nothing."""
    await register(client)
    _, cookies = await _cookie_login(client)
    value = cookies[CSRF_COOKIE].value
    header = {"cookie": value, "cookie-minus-one": value[:-1]}.get(csrf or "", csrf)
    response = await _post(client, "/auth/refresh", cookies, header)
    if outcome == "CSRF_FAILED":
        assert_error(response, 403, "CSRF_FAILED")
        again = await _post(client, "/auth/refresh", cookies, value)
        assert again.status_code == 200, again.text
        return
    assert response.status_code == 200, response.text
    assert "refresh_token" not in response.json()["data"]
    rotated = set_cookies(response)
    assert rotated[REFRESH_COOKIE].value != cookies[REFRESH_COOKIE].value
    assert rotated[CSRF_COOKIE].value != value
    assert rotated[REFRESH_COOKIE].flags == {"httponly", "secure"}
    assert rotated[REFRESH_COOKIE].attributes["path"] == "/auth"


async def test_cookie_without_csrf_cookie_is_refused(client: httpx.AsyncClient) -> None:
    """A header with no CSRF cookie to match (the cookie was never set or was stripped) is CSRF_FAILED."""
    await register(client)
    _, cookies = await _cookie_login(client)
    sent = _cookie_header(cookies[REFRESH_COOKIE].value, None) | {CSRF_HEADER: cookies[CSRF_COOKIE].value}
    assert_error(await client.post("/auth/refresh", headers=sent), 403, "CSRF_FAILED")


async def test_csrf_values_are_compared_in_constant_time(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSRF header and cookie are compared with hmac.compare_digest, not ``==``."""
    seen: list[tuple[bytes, bytes]] = []
    original: Callable[[Any, Any], bool] = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return original(a, b)

    await register(client)
    _, cookies = await _cookie_login(client)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    value = cookies[CSRF_COOKIE].value
    assert (await _post(client, "/auth/refresh", cookies, value)).status_code == 200
    assert (value.encode(), value.encode()) in seen


async def test_cookie_rotation_keeps_the_grace_window(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A retried cookie refresh (two tabs) re-sets the same successor cookie inside the grace window."""
    await register(client)
    _, cookies = await _cookie_login(client)
    first = set_cookies(await _post(client, "/auth/refresh", cookies, cookies[CSRF_COOKIE].value))
    clock.advance(3)
    second = set_cookies(await _post(client, "/auth/refresh", cookies, cookies[CSRF_COOKIE].value))
    assert second[REFRESH_COOKIE].value == first[REFRESH_COOKIE].value
    onward = await _post(client, "/auth/refresh", second, second[CSRF_COOKIE].value)
    assert onward.status_code == 200


@pytest.mark.parametrize(
    ("csrf", "ok"), [(None, False), ("wrong", False), ("right", True)], ids=["missing", "wrong", "right"]
)
async def test_cookie_logout_needs_the_csrf_header(client: httpx.AsyncClient, csrf: str | None, ok: bool) -> None:
    """Logout with the refresh cookie needs the CSRF echo; it then ends the session and clears both cookies."""
    await register(client)
    response, cookies = await _cookie_login(client)
    access = response.json()["data"]["access_token"]
    header = cookies[CSRF_COOKIE].value if csrf == "right" else csrf
    out = await _post(client, "/auth/logout", cookies, header, **bearer(access))
    if not ok:
        assert_error(out, 403, "CSRF_FAILED")
        assert await is_alive(client, access)
        return
    assert out.status_code == 200, out.text
    cleared = set_cookies(out)
    assert {cleared[REFRESH_COOKIE].attributes["max-age"], cleared[CSRF_COOKIE].attributes["max-age"]} == {"0"}
    assert cleared[REFRESH_COOKIE].attributes["path"] == "/auth"
    assert not await is_alive(client, access)
    assert_error(await _post(client, "/auth/refresh", cookies, cookies[CSRF_COOKIE].value), 401, "TOKEN_REVOKED")


async def test_cookie_session_refreshed_through_the_body_still_answers_with_cookies(client: httpx.AsyncClient) -> None:
    """A cookie-mode session never puts its refresh token in a body, even when refreshed with it in the body."""
    await register(client)
    _, cookies = await _cookie_login(client)
    response = await client.post("/auth/refresh", json={"refresh_token": cookies[REFRESH_COOKIE].value})
    assert response.status_code == 200
    assert "refresh_token" not in response.json()["data"]
    assert REFRESH_COOKIE in set_cookies(response)


@pytest.mark.parametrize(("dev", "secure"), [(False, True), (True, False)], ids=["production", "development"])
async def test_only_development_mode_drops_secure(
    make_client: ClientFactory, make_settings: SettingsFactory, dev: bool, secure: bool
) -> None:
    """The Secure attribute is dropped with KEYTURN_DEV=true and only then."""
    async with make_client(make_settings(dev=dev)) as client:
        await register(client)
        _, cookies = await _cookie_login(client)
        assert ("secure" in cookies[REFRESH_COOKIE].flags) is secure
        assert ("secure" in cookies[CSRF_COOKIE].flags) is secure
        assert "httponly" in cookies[REFRESH_COOKIE].flags


def test_insecure_cookies_outside_development_refuse_to_start() -> None:
    """KEYTURN_COOKIE_SECURE=false without KEYTURN_DEV=true is refused with a clear message."""
    with pytest.raises(ConfigurationError, match="KEYTURN_DEV"):
        load_settings(cookie_secure=False)
