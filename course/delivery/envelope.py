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


# The List-Unsubscribe mailto of one reader: unsubscribe+<subscriber id>-<course id, 0: everything>-
# <signature>@<bounce domain>, delivered to the bounce mailbox, where mail to it unsubscribes that
# reader from that scope (course/bounces/record.py), as the signed one-click link does.
UNSUBSCRIBE_PREFIX = "unsubscribe"
_UNSUBSCRIBE_LOCAL_PART = re.compile(
    rf"^{UNSUBSCRIBE_PREFIX}\+(?P<subscriber_id>[1-9][0-9]{{0,18}})-(?P<course_id>0|[1-9][0-9]{{0,18}})-(?P<signature>[a-z2-7]{{{_SIGNATURE_CHARS}}})$"
)


def _unsubscribe_signature(subscriber_id: int, course_id: int | None, secret: str) -> str:
    key = hashlib.sha256(b"course.unsubscribe-mailto:" + secret.encode("utf-8")).digest()  # not VERP's, not the links'
    digest = hmac.new(key, f"{subscriber_id}-{course_id or 0}".encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def unsubscribe_address(subscriber_id: int, course_id: int | None, *, secret: str, domain: str) -> str:
    """The mailto address that unsubscribes one reader from one course (None: from everything)."""
    return f"{UNSUBSCRIBE_PREFIX}+{subscriber_id}-{course_id or 0}-{_unsubscribe_signature(subscriber_id, course_id, secret)}@{domain}"


def unsubscription_of(address: str, *, secret: str, domain: str) -> tuple[int, int | None] | None:
    """(subscriber id, course id or None) an unsubscribe address names, or None: not ours, or forged."""
    local, at, address_domain = address.strip().strip("<>").strip().rpartition("@")
    if not at or not domain or address_domain.lower().rstrip(".") != domain.lower():
        return None
    match = _UNSUBSCRIBE_LOCAL_PART.match(local.lower())
    if match is None:
        return None
    subscriber_id, course_id = int(match["subscriber_id"]), int(match["course_id"]) or None
    if not hmac.compare_digest(match["signature"], _unsubscribe_signature(subscriber_id, course_id, secret)):
        return None
    return subscriber_id, course_id


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
