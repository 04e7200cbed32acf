"""The generic JSON format, for a relay or a script of one's own (README: "Generic webhook").

1. X-Course-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + the raw body under
   COURSE_WEBHOOK_GENERIC_SECRET>; t within COURSE_WEBHOOK_MAX_AGE_SECONDS of now.
2. The body: {"events": [{"id": "...", "type": "hard_bounce" | "soft_bounce" | "complaint",
   "recipient": "ann@example.org", "message_id": "<...>", "return_path": "bounce+...@...",
   "status": "5.1.1", "reason": "..."}]}; id, type and recipient are required, the rest optional.
   An event of another type is refused (400), so a typo does not go unnoticed."""

from __future__ import annotations

import hashlib
import hmac

from course.bounces.webhooks.events import (
    EventKind,
    ProviderEvent,
    WebhookOptions,
    WebhookRefused,
    WebhookRequest,
    bracketed,
    check_fresh,
    json_body,
    status_in,
    text,
)

HEADER = "x-course-signature"
_KINDS = {"hard_bounce": EventKind.HARD, "soft_bounce": EventKind.SOFT, "complaint": EventKind.COMPLAINT}


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """What a sender puts in X-Course-Signature (used by the tests and documented in the README)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(request: WebhookRequest, options: WebhookOptions) -> None:
    fields = dict(part.strip().partition("=")[::2] for part in request.headers.get(HEADER, "").split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1", "")
    if not timestamp or not signature:
        raise WebhookRefused(401, "X-Course-Signature (t=…,v1=…) is missing")
    check_fresh(timestamp, request, options)
    expected = hmac.new(options.generic_secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise WebhookRefused(401, "the X-Course-Signature HMAC does not match")


def read(request: WebhookRequest, options: WebhookOptions) -> list[ProviderEvent]:
    verify(request, options)
    body = json_body(request)
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        raise WebhookRefused(400, 'the body must be {"events": [...]}')
    found: list[ProviderEvent] = []
    for number, event in enumerate(events):
        if not isinstance(event, dict):
            raise WebhookRefused(400, f"events[{number}] is not an object")
        event_id, kind, address = text(event.get("id"), 200), _KINDS.get(text(event.get("type"), 20)), text(event.get("recipient"), 320).lower()
        if not event_id or kind is None or "@" not in address:
            raise WebhookRefused(400, f"events[{number}] needs an id, a type (hard_bounce, soft_bounce, complaint) and a recipient address")
        reason = text(event.get("reason"))
        found.append(
            ProviderEvent(
                event_id, kind, address, bracketed(event.get("message_id")), text(event.get("return_path"), 320).lower(),
                status_in(event.get("status"), reason) or text(event.get("status"), 32), reason,
            )  # fmt: skip
        )
    return found
