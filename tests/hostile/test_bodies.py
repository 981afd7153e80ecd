"""Hostile bodies: oversized, deeply nested, malformed, mistyped, badly encoded — each a contract 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import PASSWORD, ClientFactory, SettingsFactory, assert_error, register

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
ENDPOINTS = ["/auth/register", "/auth/login", "/auth/refresh"]
LIMIT = 64 * 1024
MULTIPART = b'--xyz\r\nContent-Disposition: form-data; name="email"\r\n\r\nalice@example.com\r\n--xyz--\r\n'


@pytest.mark.parametrize("path", ENDPOINTS, ids=["register", "login", "refresh"])
async def test_declared_oversize_body_is_refused_unread(parser: httpx.AsyncClient, path: str) -> None:
    """A Content-Length over 64 KiB is 413 PAYLOAD_TOO_LARGE before any parsing."""
    body = b'{"email": "' + b"a" * LIMIT + b'"}'
    assert_error(await parser.post(path, content=body, headers=JSON), 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("path", ENDPOINTS, ids=["register", "login", "refresh"])
async def test_chunked_oversize_body_is_refused(parser: httpx.AsyncClient, path: str) -> None:
    """A body without Content-Length is counted as it streams and refused at the limit, still a 413."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "'
        for _ in range(8):
            yield b"a" * 16 * 1024
        yield b'"}'

    response = await parser.post(path, content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_chunked_body_within_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    """Streaming alone is no offence: a small chunked body is parsed normally."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "alice@example.com", '
        yield b'"password": "' + PASSWORD.encode() + b'"}'

    assert (await client.post("/auth/register", content=chunks(), headers=JSON)).status_code == 201


async def test_the_limit_is_configurable(make_client: ClientFactory, make_settings: SettingsFactory) -> None:
    """KEYTURN_BODY_LIMIT moves the line: 2 KiB refuses what 64 KiB accepts."""
    body = {"email": "alice@example.com", "password": PASSWORD, "name": "x" * 150}
    async with make_client(make_settings(body_limit=1024)) as client:
        assert (await client.post("/auth/register", json=body)).status_code == 201
        assert_error(await client.post("/auth/login", json={**body, "pad": "x" * 1024}), 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 60_000,
        b'{"a":' * 12_000,
        b'{"email": ' + b"[" * 20_000 + b"]" * 20_000 + b', "password": "x"}',
        b'{"email": 1' + b"0" * 30_000 + b', "password": "x"}',
    ],
    ids=["60k-open-arrays", "12k-open-objects", "deep-but-valid", "huge-integer"],
)
@pytest.mark.parametrize("path", ENDPOINTS, ids=["register", "login", "refresh"])
async def test_pathological_json_is_a_validation_error(parser: httpx.AsyncClient, path: str, body: bytes) -> None:
    """Nesting deep enough to exhaust a recursive parser, or a 30k-digit number, is a 422."""
    assert_error(await parser.post(path, content=body, headers=JSON), 422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": ',
        b'{"email": "a@example.com", "password": "x"} trailing',
        b"{'email': 'a@example.com'}",
        b'{"email": NaN, "password": Infinity}',
        b"",
        b"null",
        b"[]",
        b'"a string"',
        b'{"email": "a@example.com", "password": "x", "extra": 1}',
        b'{"email": ["a@example.com"], "password": {"x": 1}}',
        b'{"email": "\xff\xfe@example.com", "password": "x"}',
        b'\xef\xbb\xbf{"email": "a@example.com"}',
        b'{"email": "\\ud800@example.com", "password": "x"}',
        b'{"email": "a@example.com", "password": "\\udfff\\ud800"}',
    ],
    ids=[
        "truncated",
        "trailing-garbage",
        "single-quotes",
        "non-finite-numbers",
        "empty",
        "null",
        "array",
        "string",
        "unknown-field",
        "wrong-types",
        "invalid-utf8",
        "utf8-bom",
        "lone-surrogate-email",
        "lone-surrogates-password",
    ],
)
@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"], ids=["register", "login"])
async def test_malformed_json_is_a_validation_error(parser: httpx.AsyncClient, path: str, body: bytes) -> None:
    """Anything that is not the request's JSON object is 422 VALIDATION_ERROR, never a 500."""
    assert_error(await parser.post(path, content=body, headers=JSON), 422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"email": "alice@example.com", "password": "correct horse battery staple"}'),
        ("application/x-www-form-urlencoded", b"email=alice%40example.com&password=correct+horse+battery+staple"),
        ("multipart/form-data; boundary=xyz", MULTIPART),
        ("application/xml", b"<login><email>alice@example.com</email></login>"),
        ("application/json; charset=utf-16", '{"email": "alice@example.com"}'.encode("utf-16")),
        ("", b'{"email": "alice@example.com"}'),
    ],
    ids=["text-plain", "form", "multipart", "xml", "utf16-json", "no-content-type"],
)
@pytest.mark.parametrize("path", ENDPOINTS, ids=["register", "login", "refresh"])
async def test_wrong_content_types_are_validation_errors(
    parser: httpx.AsyncClient, path: str, content_type: str, body: bytes
) -> None:
    """Only a JSON object is a request body; forms, text and XML are 422, not parsed as something else."""
    response = await parser.post(path, content=body, headers={"Content-Type": content_type})
    assert_error(response, 422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "case",
    [
        ("email", "alice\x00@example.com"),
        ("email", "alice@example.com\x00"),
        ("name", "Alice\x00Liddell"),
        ("name", "Alice\x1b[31m"),
        ("email", "alice@exa\u202emple.com"),
    ],
    ids=["nul-in-email", "trailing-nul-in-email", "nul-in-name", "escape-sequence-in-name", "bidi-override-in-email"],
)
@pytest.mark.parametrize("db", ["sqlite", "postgres"])
async def test_control_characters_are_refused_on_every_database(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    request: pytest.FixtureRequest,
    db: str,
    case: tuple[str, str],
) -> None:
    """NUL bytes and control characters never reach a column (PostgreSQL text cannot even hold NUL)."""
    field, value = case
    overrides = {"database_url": request.getfixturevalue("pg_url")} if db == "postgres" else {}
    async with make_client(make_settings(**overrides)) as client:
        body = {"email": "alice@example.com", "password": PASSWORD, field: value}
        body_errors = assert_error(await client.post("/auth/register", json=body), 422, "VALIDATION_ERROR")
        assert field in body_errors["error"]["fields"]
        login = await client.post("/auth/login", json={"email": body["email"], "password": PASSWORD})
        assert login.status_code == 401


async def test_a_nul_in_the_password_is_just_a_character(client: httpx.AsyncClient) -> None:
    """Passwords are opaque: a NUL is hashed like any other character, and must match exactly."""
    await register(client, password=PASSWORD + "\x00!")
    ok = await client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD + "\x00!"})
    cut = await client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert ok.status_code == 200
    assert_error(cut, 401, "INVALID_CREDENTIALS")
