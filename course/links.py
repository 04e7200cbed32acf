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


@lru_cache(maxsize=64)
def _serializer(secret: str, purpose: LinkPurpose) -> URLSafeTimedSerializer:
    # Built once per purpose rather than once per link: a send batch signs three links a message.
    return URLSafeTimedSerializer(secret, salt=f"course.{purpose}")


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
