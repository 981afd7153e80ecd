"""E-mail normalisation and the password policy (NIST SP 800-63B §3.1.1.2).

E-mails are NFKC-normalised and case-folded, then checked by ``email-validator``
(syntax only: no DNS at request time). Passwords are NFKC-normalised; their length
is checked *before* any hashing (a 1 MB password must not cost an argon2 run), and
they are refused when they appear in the list of common passwords that the
``zxcvbn`` package ships (its ``passwords`` frequency list, ~30k entries drawn from
real breach corpora), or when they merely repeat the e-mail.

That list is read from zxcvbn's source rather than imported: importing
``zxcvbn.frequency_lists`` builds every one of its word lists (~12 MiB that a server
would keep for good), when the check needs one. Only the entries a policy-compliant
password could equal are kept, in one string (~110 kB).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import unicodedata
from functools import cache, lru_cache
from pathlib import Path
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
    return _normalised_email(raw)


@lru_cache(maxsize=1024)
def _normalised_email(raw: str) -> str:
    """:func:`normalise_email`'s work, remembered for the last 1,024 valid addresses.

    A login normalises its e-mail three times (the throttle's key, the audit trail, the
    account lookup), and ``email-validator`` costs ~0.1 ms a time: the largest part of a
    login's request path after the hash and the database. A pure function of its input;
    refusals raise, and raised calls are not remembered.
    """
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


#: The line of ``zxcvbn/frequency_lists.py`` that holds the list: ``"passwords": "a,b,...".split(","),``.
_PASSWORDS_LINE: Final = re.compile(r'"passwords": ("(?:[^"\\]|\\.)*")\.split\(","\),?')


def _zxcvbn_passwords_from_source() -> list[str] | None:
    """zxcvbn's ``passwords`` list, read from its source file; None if that file is not as expected."""
    spec = importlib.util.find_spec("zxcvbn")  # the top-level package: found, not imported
    for folder in (spec.submodule_search_locations or []) if spec else []:
        source = Path(folder) / "frequency_lists.py"
        if not source.is_file():
            continue
        with source.open(encoding="utf-8") as lines:
            for line in lines:
                if match := _PASSWORDS_LINE.fullmatch(line.strip()):
                    value = ast.literal_eval(match[1])
                    return value.split(",") if isinstance(value, str) else None
    return None


def _zxcvbn_passwords() -> list[str]:
    found = _zxcvbn_passwords_from_source()
    if found is not None:
        return found
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # noqa: PLC0415 - fallback: a zxcvbn laid out otherwise

    return list(FREQUENCY_LISTS["passwords"])


@cache
def _common_passwords() -> str:
    """The list as one newline-framed string, loaded on first use: ``"\\nword\\n" in`` it is membership.

    Entries shorter than :data:`MIN_PASSWORD_LENGTH` are left out: a password that short
    is refused before this check, and case-folding never shortens a string.
    """
    kept = [word for word in _zxcvbn_passwords() if len(word) >= MIN_PASSWORD_LENGTH]
    if any("\n" in word for word in kept):
        raise RuntimeError("zxcvbn's password list changed shape: an entry holds a newline")
    return "\n" + "\n".join(kept) + "\n"


def _is_common_password(folded: str) -> bool:
    """True if ``folded`` (a case-folded password of at least the minimum length) is on zxcvbn's list."""
    return "\n" not in folded and f"\n{folded}\n" in _common_passwords()


def check_password(raw: str, *, email: str | None = None, field: str = "password") -> str:
    """The normalised password, if the policy accepts it; else :class:`ValidationFailed` on ``field``."""
    password = normalise_password(raw)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(fields={field: f"must be at least {MIN_PASSWORD_LENGTH} characters"})
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(fields={field: f"must be at most {MAX_PASSWORD_LENGTH} characters"})
    lowered = password.casefold()
    if _is_common_password(lowered):
        raise ValidationFailed(fields={field: "is a commonly used password; choose another"})
    if email and lowered in {email.casefold(), email.split("@")[0].casefold()}:
        raise ValidationFailed(fields={field: "must not be your e-mail address"})
    return password
