"""Signed links in every email: unsubscribe, preferences, view in browser, confirm.

Each purpose has its own salt, so a token made for one purpose is worthless for another, and all
are signed with the settings' secret (itsdangerous, HMAC-SHA1 over a compact payload and a
timestamp). The timestamp is real time (clock.get_wall_clock): expiry is a security rule, so the
demo's fast course calendar does not age links; tests move it with set_wall_clock.

How long each purpose lives (settings; Signer.max_ages):
- unsubscribe: for ever (a years-old email must still let its reader leave);
- view: for ever, but it shows the lesson only (no account links: it is the link people forward);
- preferences: preference_link_max_age_days (90) after the mail that carried it; every mail signs
  a fresh one, so a reader who still receives mail always holds a working link;
- confirm: confirm_link_max_age_days (7).
- erase: erase_link_max_age_hours (24): the link a subscriber asks for on the preferences page to
  confirm, by mail, that their data is to be erased.
- admin invitation: not by its stamp, which is on the project's clock: the invitation row's
  expires_at on the wall clock (admin_invitation_hours), its nonce (only the newest send's link)
  and accepted_at (once) decide (course.accounts.store.accept_invitation).

A token is accepted only in the exact form we issue: three base64url parts in canonical encoding.
(base64 decoding ignores stray characters and the spare bits of the last character, so without
this check one token would have many spellings that all verify.)"""

from __future__ import annotations

import binascii
import functools
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from itsdangerous import BadData, BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode, int_to_bytes
from itsdangerous.signer import HMACAlgorithm
from itsdangerous.url_safe import URLSafeSerializerMixin

from course.clock import get_wall_clock
from course.settings import Settings

# Ids in link payloads are database keys: BIGINT at most. Anything larger is not a link of ours
# (and would overflow the database driver).
MAX_ID = 2**63 - 1


class LinkPurpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    VIEW = "view"
    CONFIRM = "confirm"
    ADMIN_INVITATION = "admin-invitation"
    ERASE = "erase"


# The path each purpose is served under by the web app.
PATHS = {
    LinkPurpose.UNSUBSCRIBE: "/u/",
    LinkPurpose.PREFERENCES: "/preferences/",
    LinkPurpose.VIEW: "/view/",
    LinkPurpose.CONFIRM: "/confirm/",
    LinkPurpose.ADMIN_INVITATION: "/admin/invitation/",
    LinkPurpose.ERASE: "/erase/",
}


# Where a test send's preference and unsubscribe links lead (course.delivery.compose.campaign_test):
# pages that say what the link does in the real mail and change nothing, for whoever opens them.
TEST_MAIL_PATHS = {
    LinkPurpose.UNSUBSCRIBE: "/test-mail/unsubscribe",
    LinkPurpose.PREFERENCES: "/test-mail/preferences",
}


class InvalidLink(ValueError):
    """A token that was tampered with, made for another purpose, or expired."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class _OneShotSHA1HMAC(HMACAlgorithm):
    """itsdangerous's HMAC-SHA1 from a copy of the key's HMAC (_keyed_sha1): the same signature
    in C calls, instead of a Python HMAC object built for every link checked."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        mac = _keyed_sha1(key).copy()
        mac.update(value)
        return mac.digest()


class _ClockSigner(TimestampSigner):
    """itsdangerous's timestamp signer, reading the time from `now` (Unix seconds) instead of
    time.time(): both when it stamps a token and when it checks a token's age."""

    def __init__(self, *args: Any, now: Callable[[], float], **kwargs: Any) -> None:
        kwargs.setdefault("algorithm", _OneShotSHA1HMAC())
        super().__init__(*args, **kwargs)
        self.now = now

    def get_timestamp(self) -> int:
        return int(self.now())

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        # The key depends only on the secret and the salt: derived once, not for every token (the
        # stock signer runs an extra HMAC for each link it signs or checks).
        cache: dict[str | bytes | None, bytes] = self.__dict__.setdefault("_derived", {})
        key = cache.get(secret_key)
        if key is None:
            key = cache[secret_key] = super().derive_key(secret_key)
        return key


class _LinkSerializer(URLSafeTimedSerializer):
    """itsdangerous's URL-safe timed serializer without the zlib attempt when dumping.

    The stock `dump_payload` compresses every payload to see whether that is shorter, and
    zlib.compress costs about 40 µs a call here (it sets up its whole deflate state): with three
    links a message that was more than a third of a send worker's time. A link's payload is a few
    ids, which compression does not shorten anyway. The tokens are exactly what the stock
    serializer makes for an incompressible payload, and load with it unchanged."""

    def make_signer(self, salt: str | bytes | None = None) -> TimestampSigner:
        # One signer per salt, kept: the stock serializer builds a new one for every token.
        cache: dict[str | bytes | None, TimestampSigner] = self.__dict__.setdefault("_signers", {})
        signer = cache.get(salt)
        if signer is None:
            signer = cache[salt] = super().make_signer(salt)  # type: ignore[assignment]
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        # Serializer.dump_payload (the JSON), base64 as URLSafeSerializerMixin does, no zlib.
        return base64_encode(super(URLSafeSerializerMixin, self).dump_payload(obj))

    def dumps(self, obj: Any, salt: str | bytes | None = None) -> str:
        """The token the stock `dumps` makes (dump_payload, then TimestampSigner.sign: payload,
        timestamp and HMAC-SHA1 signature, each base64url without padding, joined by dots), made in
        a handful of C calls. A message signs three links, and the stock path's dozens of small
        Python calls per token were a fifth of composing it. tests/delivery/test_links.py holds
        the two to the same bytes."""
        signer = self.make_signer(salt)
        payload = _b64url(_COMPACT_JSON.encode(obj).encode("utf-8"))
        stamped = payload + b"." + _b64url(int_to_bytes(signer.get_timestamp()))
        return (stamped + b"." + _b64url(signer.algorithm.get_signature(signer.derive_key(), stamped))).decode("ascii")


# itsdangerous's JSON (its _json.dumps: compact separators, no ASCII escaping) and base64url without
# padding (its encoding.base64_encode).
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_URLSAFE = bytes.maketrans(b"+/", b"-_")


@functools.lru_cache(maxsize=32)
def _keyed_sha1(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA1 of `key` with nothing hashed yet: a token's MAC is a copy of it (the key's
    pads are hashed once, not per token)."""
    return hmac.new(key, digestmod="sha1")


def _b64url(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE)


_CANONICAL_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def is_canonical(token: str) -> bool:
    """Whether `token` is spelled exactly as we issue tokens: payload, timestamp and signature in
    base64url without padding, each part re-encoding to itself."""
    if not _CANONICAL_SHAPE.fullmatch(token):
        return False
    try:
        return all(base64_encode(base64_decode(part)).decode() == part for part in token.split("."))
    except BadData:
        return False


@dataclass(frozen=True)
class Signer:
    secret: str
    base_url: str
    # Where "now" comes from, in Unix seconds: real time (signer_from_settings).
    now: Callable[[], float] = time.time
    # How long a token of each purpose is valid, in seconds; a purpose not listed never expires.
    max_ages: Mapping[LinkPurpose, int] = field(default_factory=dict)
    _serializers: dict[LinkPurpose, URLSafeTimedSerializer] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per purpose rather than once per link: a send batch signs three links a message.
        for purpose in LinkPurpose:
            self._serializers[purpose] = _LinkSerializer(
                self.secret, salt=f"course.{purpose}", signer=_ClockSigner, signer_kwargs={"now": self.now}
            )

    def token(self, purpose: LinkPurpose, *payload: Any) -> str:
        return self._serializers[purpose].dumps(list(payload))

    def url(self, purpose: LinkPurpose, *payload: Any) -> str:
        return f"{self.base_url.rstrip('/')}{PATHS[purpose]}{self.token(purpose, *payload)}"

    def read(self, purpose: LinkPurpose, token: str, *, max_age_seconds: int | None = None) -> list[Any]:
        """The payload of a token of this purpose, or InvalidLink: tampered, not canonical, made
        for another purpose, or older than max_age_seconds (default: this purpose's max age)."""
        if not is_canonical(token):
            raise InvalidLink(f"this {purpose} link is not valid")
        max_age = max_age_seconds if max_age_seconds is not None else self.max_ages.get(purpose)
        try:
            payload = self._serializers[purpose].loads(token, max_age=max_age)
        except SignatureExpired as exc:
            raise InvalidLink(f"this {purpose} link has expired", expired=True) from exc
        except BadSignature as exc:
            raise InvalidLink(f"this {purpose} link is not valid") from exc
        if not isinstance(payload, list):
            raise InvalidLink(f"this {purpose} link is not valid")
        return payload


def signer_from_settings(settings: Settings) -> Signer:
    """Links are stamped and their age checked in real time (get_wall_clock, asked per token): a
    link's expiry is a security rule, not a date on the course calendar, so the demo's fast
    calendar does not expire a confirmation link within a minute. A test's set_wall_clock applies."""

    def now() -> float:
        return get_wall_clock().now().timestamp()

    return Signer(
        secret=settings.secret_key,
        base_url=settings.base_url,
        now=now,
        max_ages={
            LinkPurpose.CONFIRM: settings.confirm_link_max_age_days * 86400,
            LinkPurpose.PREFERENCES: settings.preference_link_max_age_days * 86400,
            LinkPurpose.ERASE: settings.erase_link_max_age_hours * 3600,
        },
    )
