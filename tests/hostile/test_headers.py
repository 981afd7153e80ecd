"""Hostile requests over a real socket to a real uvicorn: huge and broken headers get a 4xx, never a 5xx."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from keyturn.server.app import create_app
from keyturn.settings import load_settings

LOGIN_BODY = b'{"email": "alice@example.com", "password": "not the password"}'


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """keyturn served by uvicorn (its default HTTP parser, as `keyturn serve` runs it) on a free port."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("served"), password_profile="test-only-cheap")
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield int(server.servers[0].sockets[0].getsockname()[1])
    server.should_exit = True
    thread.join(timeout=10)


def exchange(port: int, request: bytes) -> int:
    """Send raw bytes, return the status code of the answer (0 if the server just hung up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        # Refused mid-send or reset: what matters is what, if anything, came back.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(request)
        head = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0


def login_request(*headers: bytes, body: bytes = LOGIN_BODY) -> bytes:
    lines = [
        b"POST /auth/login HTTP/1.1",
        b"Host: keyturn.test",
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
        *headers,
        b"Connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


KIB64 = b"a" * 64 * 1024


@pytest.mark.parametrize(
    "request_bytes",
    [
        login_request(b"X-Padding: " + KIB64),
        login_request(b"User-Agent: " + KIB64),
        login_request(b"X-Forwarded-For: " + b", ".join([b"10.0.0.1"] * 6000)),
        login_request(*(b"X-H%d: v" % n for n in range(2000))),
        login_request(b"Cookie: keyturn_refresh=" + KIB64),
        b"GET /auth/me HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer " + KIB64 + b"\r\nConnection: close\r\n\r\n",
        b"GET /auth/me?" + KIB64 + b" HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n",
        login_request(b"User-Agent: a\x00b"),
        login_request(b"User-Agent: \xff\xfe\xfd"),
        b"POST /auth/login HTTP/1.1\r\nHost: k\r\nContent-Length: twelve\r\nConnection: close\r\n\r\n",
        b"POST /auth/login HTTP/1.1\r\nHost: k\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n",
        b"POST /auth/login HTTP/1.1\r\nHost: k\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /auth/login HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"".join(b"4000\r\n" + b"a" * 0x4000 + b"\r\n" for _ in range(6))
        + b"0\r\n\r\n",
        b"BREW /auth/login HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    ],
    ids=[
        "64k-header",
        "64k-user-agent",
        "6000-forwarded-hops",
        "2000-headers",
        "64k-cookie",
        "64k-bearer",
        "64k-query",
        "nul-in-header",
        "non-ascii-header",
        "bad-content-length",
        "absurd-content-length",
        "length-and-chunked",
        "96k-chunked-body",
        "unknown-method",
        "tls-to-plain-port",
    ],
)
def test_hostile_requests_get_a_client_error(port: int, request_bytes: bytes) -> None:
    """Whatever the server or keyturn answers is a 4xx (or a hang-up), never a 5xx."""
    status = exchange(port, request_bytes)
    assert status == 0 or 400 <= status < 500, status
