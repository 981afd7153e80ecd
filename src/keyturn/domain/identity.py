"""E-mail normalisation and the password policy (NIST SP 800-63B §3.1.1.2).

E-mails are NFKC-normalised and case-folded, then checked by ``email-validator``
(syntax only: no DNS at request time). Passwords are NFKC-normalised; their length
is checked *before* any hashing (a 1 MB password must not cost an argon2 run), and
they are refused when they appear in the list of common passwords that the
``zxcvbn`` package ships (its ``passwords`` frequency list, ~30k entries drawn from
real breach corpora), or when they merely repeat the e-mail.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Final

from email_validator import EmailNotValidError, validate_email

from keyturn.errors import ValidationFailed

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "check_password", "normalise_email", "normalise_password"]

MIN_PASSWORD_LENGTH: Final = 8
#: NIST asks for at least 64; 128 keeps hashing bounded and every real passphrase in.
MAX_PASSWORD_LENGTH: Final = 128
MAX_EMAIL_LENGTH: Final = 254


def normalise_email(raw: str) -> str:
    """The canonical form of an e-mail address; raise :class:`ValidationFailed` if it is not one."""
    if len(raw) > MAX_EMAIL_LENGTH * 4:
        raise ValidationFailed(fields={"email": "is not a valid e-mail address"})
    folded = unicodedata.normalize("NFKC", raw).strip().casefold()
    try:
        checked = validate_email(folded, check_deliverability=False)
    except EmailNotValidError:
        raise ValidationFailed(fields={"email": "is not a valid e-mail address"}) from None
    if len(checked.normalized) > MAX_EMAIL_LENGTH:
        raise ValidationFailed(fields={"email": "is too long"})
    return checked.normalized.casefold()


def normalise_password(raw: str) -> str:
    """NFKC-normalise, so the same passphrase typed on two keyboards hashes the same."""
    if len(raw) > MAX_PASSWORD_LENGTH * 4:
        raise ValidationFailed(fields={"password": f"must be at most {MAX_PASSWORD_LENGTH} characters"})
    return unicodedata.normalize("NFKC", raw)


@cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # noqa: PLC0415 - ~1 MB list, loaded on first use

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password(raw: str, *, email: str | None = None, field: str = "password") -> str:
    """The normalised password, if the policy accepts it; else :class:`ValidationFailed` on ``field``."""
    password = normalise_password(raw)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(fields={field: f"must be at least {MIN_PASSWORD_LENGTH} characters"})
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(fields={field: f"must be at most {MAX_PASSWORD_LENGTH} characters"})
    lowered = password.casefold()
    if lowered in _common_passwords():
        raise ValidationFailed(fields={field: "is a commonly used password; choose another"})
    if email and lowered in {email.casefold(), email.split("@")[0].casefold()}:
        raise ValidationFailed(fields={field: "must not be your e-mail address"})
    return password
