"""Signed links in every email: unsubscribe, preferences, view in browser, confirm.

Each purpose has its own salt, so a token made for one purpose is worthless for another, and all
are signed with the settings' secret (itsdangerous, HMAC-SHA1 over a compact payload and a
timestamp). Unsubscribe and preference links never expire (a years-old email must still let its
reader leave); confirmation links do."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.url_safe import URLSafeSerializerMixin

from course.settings import Settings


class LinkPurpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    VIEW = "view"
    CONFIRM = "confirm"


# The path each purpose is served under by the web app.
PATHS = {
    LinkPurpose.UNSUBSCRIBE: "/u/",
    LinkPurpose.PREFERENCES: "/preferences/",
    LinkPurpose.VIEW: "/view/",
    LinkPurpose.CONFIRM: "/confirm/",
}


class InvalidLink(ValueError):
    """A token that was tampered with, made for another purpose, or expired."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class _LinkSerializer(URLSafeTimedSerializer):
    """itsdangerous's URL-safe timed serializer without the zlib attempt when dumping.

    The stock `dump_payload` compresses every payload to see whether that is shorter, and
    zlib.compress costs about 40 µs a call here (it sets up its whole deflate state): with three
    links a message that was more than a third of a send worker's time. A link's payload is a few
    ids, which compression does not shorten anyway. The tokens are exactly what the stock
    serializer makes for an incompressible payload, and load with it unchanged."""

    def dump_payload(self, obj: Any) -> bytes:
        # Serializer.dump_payload (the JSON), base64 as URLSafeSerializerMixin does, no zlib.
        return base64_encode(super(URLSafeSerializerMixin, self).dump_payload(obj))


@lru_cache(maxsize=64)
def _serializer(secret: str, purpose: LinkPurpose) -> URLSafeTimedSerializer:
    # Built once per purpose rather than once per link: a send batch signs three links a message.
    return _LinkSerializer(secret, salt=f"course.{purpose}")


@dataclass(frozen=True)
class Signer:
    secret: str
    base_url: str

    def token(self, purpose: LinkPurpose, *payload: Any) -> str:
        return _serializer(self.secret, purpose).dumps(list(payload))

    def url(self, purpose: LinkPurpose, *payload: Any) -> str:
        return f"{self.base_url.rstrip('/')}{PATHS[purpose]}{self.token(purpose, *payload)}"

    def read(self, purpose: LinkPurpose, token: str, *, max_age_seconds: int | None = None) -> list[Any]:
        try:
            payload = _serializer(self.secret, purpose).loads(token, max_age=max_age_seconds)
        except SignatureExpired as exc:
            raise InvalidLink(f"this {purpose} link has expired", expired=True) from exc
        except BadSignature as exc:
            raise InvalidLink(f"this {purpose} link is not valid") from exc
        if not isinstance(payload, list):
            raise InvalidLink(f"this {purpose} link is not valid")
        return payload


def signer_from_settings(settings: Settings) -> Signer:
    return Signer(secret=settings.secret_key, base_url=settings.base_url)
