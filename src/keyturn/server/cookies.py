"""Cookie mode (CONTRACT.md §4): the refresh token in an HttpOnly cookie, CSRF by double submit.

The refresh cookie is ``HttpOnly; Secure; SameSite=Strict; Path=/auth`` — scripts
cannot read it and it only travels to the auth endpoints. Beside it a readable CSRF
cookie holds a random value that the page must echo in ``X-CSRF-Token``: a
cross-site form can send cookies but cannot read them, so it cannot echo the value.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from keyturn.crypto.opaque import constant_time_equal, mint_csrf_token
from keyturn.errors import CsrfFailed

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "REFRESH_COOKIE", "CookiePolicy"]

REFRESH_COOKIE: Final = "keyturn_refresh"
CSRF_COOKIE: Final = "keyturn_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"


class CookiePolicy:
    """Sets, clears and checks the session cookies with one set of attributes."""

    def __init__(self, *, secure: bool) -> None:
        self.secure = secure

    def set(self, response: Response, refresh_token: str, max_age: int) -> None:
        """Set the refresh cookie and a fresh CSRF cookie beside it."""
        response.set_cookie(
            REFRESH_COOKIE,
            refresh_token,
            max_age=max_age,
            path="/auth",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )
        response.set_cookie(
            CSRF_COOKIE,
            mint_csrf_token(),
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=False,
            samesite="strict",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(REFRESH_COOKIE, path="/auth", secure=self.secure, httponly=True, samesite="strict")
        response.delete_cookie(CSRF_COOKIE, path="/", secure=self.secure, httponly=False, samesite="strict")

    @staticmethod
    def refresh_token(request: Request) -> str | None:
        return request.cookies.get(REFRESH_COOKIE) or None

    @staticmethod
    def check_csrf(request: Request) -> None:
        """Raise :class:`CsrfFailed` unless ``X-CSRF-Token`` equals the CSRF cookie."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        header = request.headers.get(CSRF_HEADER, "")
        if not cookie or not header or not constant_time_equal(cookie, header):
            raise CsrfFailed()
