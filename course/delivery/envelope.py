"""The envelope sender (SMTP MAIL FROM, the Return-Path a mailbox sees): where bounces go.

With a bounce domain configured, each message gets its own VERP address that names its delivery,
signed so that nobody can make one up:

    bounce+<delivery id>-<signature>@<bounce domain>

The signature is 16 base32 characters of an HMAC-SHA256 of the delivery id under the site's secret
(80 bits), lower-case because some relays lower-case local parts. A bounce that comes back to the
address names its delivery, and so its subscriber, exactly (course/bounces/). Without a bounce
domain the envelope sender is the From address, as before.

Pure: nothing here reads the database or talks to a server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from course.settings import Settings

VERP_PREFIX = "bounce"
_SIGNATURE_CHARS = 16
_VERP_LOCAL_PART = re.compile(rf"^{VERP_PREFIX}\+(?P<delivery_id>[1-9][0-9]{{0,18}})-(?P<signature>[a-z2-7]{{{_SIGNATURE_CHARS}}})$")


def _signature(delivery_id: int, secret: str) -> str:
    key = hashlib.sha256(b"course.verp:" + secret.encode("utf-8")).digest()  # a key of its own, not the links'
    digest = hmac.new(key, str(delivery_id).encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def verp_address(delivery_id: int, *, secret: str, domain: str) -> str:
    """The envelope sender of one delivery under `domain`."""
    return f"{VERP_PREFIX}+{delivery_id}-{_signature(delivery_id, secret)}@{domain}"


def delivery_of_verp(address: str, *, secret: str, domain: str) -> int | None:
    """The delivery id a VERP address names, or None: not under `domain`, not of our shape, or a
    signature that does not match (a forged or damaged address)."""
    address = address.strip().strip("<>").strip()
    local, at, address_domain = address.rpartition("@")
    if not at or not domain or address_domain.lower().rstrip(".") != domain.lower():
        return None
    match = _VERP_LOCAL_PART.match(local.lower())
    if match is None:
        return None
    delivery_id = int(match["delivery_id"])
    if not hmac.compare_digest(match["signature"], _signature(delivery_id, secret)):
        return None
    return delivery_id


class EnvelopeSender:
    """Chooses each message's envelope sender from the settings: a VERP address when
    COURSE_BOUNCE_DOMAIN is set, else the From address the composer chose."""

    def __init__(self, settings: Settings) -> None:
        self.domain = settings.bounce_domain
        self.secret = settings.secret_key

    def of(self, delivery_id: int, from_address: str) -> str:
        if not self.domain:
            return from_address
        return verp_address(delivery_id, secret=self.secret, domain=self.domain)
