"""Pure rules for admin credentials: roles, passwords (argon2id), TOTP codes, recovery codes, and
the random tokens behind sessions and API access. No database, no clock of its own: `now` is a
parameter wherever time matters."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from course.models import AdminRole

# owner > editor > viewer: a route that needs `editor` admits editors and owners.
ROLE_RANK = {AdminRole.VIEWER: 1, AdminRole.EDITOR: 2, AdminRole.OWNER: 3}

PASSWORD_MIN_LENGTH = 12
# argon2 hashes whatever it is given; a megabyte "password" would be a cheap way to burn our CPU.
PASSWORD_MAX_LENGTH = 256
API_TOKEN_PREFIX = "course_"
RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "course admin"

# One hasher: argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): about 0.15 s on
# one busy core here, where the library's default (64 MiB, 3 passes, 4 lanes) took over a second and
# would let a few sign-in attempts occupy the web processes. Existing hashes carry their own
# parameters, and a sign-in rehashes one made with others (needs_rehash).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the address is unknown, so a wrong address costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password anyone has")
_RECOVERY_CODE = re.compile(r"[a-z0-9]{5}-[a-z0-9]{5}")


class CredentialError(ValueError):
    """A password, role, code or name that breaks a rule: the message says which rule."""


def parse_role(raw: str) -> AdminRole:
    try:
        return AdminRole(raw.strip().lower())
    except ValueError:
        raise CredentialError(f"unknown role {raw!r}: use owner, editor or viewer") from None


def role_allows(have: str, need: AdminRole) -> bool:
    """Whether an account or token with role `have` may do what needs `need`."""
    try:
        return ROLE_RANK[AdminRole(have)] >= ROLE_RANK[need]
    except ValueError:
        return False  # a role this code does not know grants nothing


def check_password_rules(password: str, *, email: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise CredentialError(f"the password is shorter than {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise CredentialError(f"the password is longer than {PASSWORD_MAX_LENGTH} characters")
    if password.strip().lower() == email.strip().lower():
        raise CredentialError("the password cannot be the email address")


def generate_password() -> str:
    """A one-time password for a new admin: 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is an account: None checks against a dummy hash."""
    if len(password) > PASSWORD_MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def token_hash(token: str) -> str:
    """What the database keeps of a session or API token. Tokens carry 256 random bits, so a fast
    hash is enough: nobody can guess one to test against it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def new_link_nonce() -> str:
    """The random part of an invitation link (signed with it): a re-send draws a new one."""
    return secrets.token_urlsafe(16)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def looks_like_api_token(value: str) -> bool:
    return value.startswith(API_TOKEN_PREFIX) and 40 <= len(value) <= 64


# --- second factor -----------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def totp_step_of(secret: str, code: str, *, now: datetime, after_step: int | None = None) -> int | None:
    """The 30-second time-step a six-digit authenticator code belongs to, or None when it matches
    none. One step either side of now is accepted for clock drift; a step at or before `after_step`
    (the last one this admin used) is not: a code works once, however fast it is replayed."""
    digits = re.sub(r"\s", "", code)
    if not re.fullmatch(r"\d{6}", digits):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if (after_step is None or step > after_step) and hmac.compare_digest(totp.generate_otp(step), digits):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes like 'k3x9q-7mzp2', each good for one sign-in without the authenticator."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: they are read off paper
    return [
        "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(2))
        for _ in range(RECOVERY_CODE_COUNT)
    ]


# Recovery codes carry ~50 random bits and sign-ins are throttled, so a lighter argon2 is enough;
# it keeps checking a code against all ten stored hashes well under a second.
_code_hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def hash_recovery_code(code: str) -> str:
    return _code_hasher.hash(code)


def recovery_code_matches(stored_hash: str, code: str) -> bool:
    try:
        return _code_hasher.verify(stored_hash, code)
    except (VerificationError, InvalidHashError):
        return False


def normalize_recovery_code(code: str) -> str | None:
    cleaned = re.sub(r"\s", "", code).lower()
    if len(cleaned) == 10 and "-" not in cleaned:
        cleaned = f"{cleaned[:5]}-{cleaned[5:]}"
    return cleaned if _RECOVERY_CODE.fullmatch(cleaned) else None
