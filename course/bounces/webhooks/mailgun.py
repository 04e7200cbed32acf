"""Mailgun's webhooks (the JSON ones).

1. The body's `signature` object holds timestamp, token and signature: the signature must be the
   hex HMAC-SHA256 of timestamp + token under COURSE_WEBHOOK_MAILGUN_SIGNING_KEY, and the timestamp
   within COURSE_WEBHOOK_MAX_AGE_SECONDS of now.
2. `event-data`: `failed` with severity permanent is hard, temporary soft; `complained` a
   complaint. Keyed by the event's id; message.headers.message-id is our Message-ID."""

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


def verify(body: dict[str, object], request: WebhookRequest, options: WebhookOptions) -> None:
    signed = body.get("signature")
    if not isinstance(signed, dict):
        raise WebhookRefused(401, "the body has no signature object")
    timestamp, token, signature = (text(signed.get(name), 200) for name in ("timestamp", "token", "signature"))
    if not (timestamp and token and signature):
        raise WebhookRefused(401, "the signature object lacks timestamp, token or signature")
    check_fresh(timestamp, request, options)
    expected = hmac.new(options.mailgun_signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise WebhookRefused(401, "the Mailgun signature does not match")


def read(request: WebhookRequest, options: WebhookOptions) -> list[ProviderEvent]:
    body = json_body(request)
    if not isinstance(body, dict):
        raise WebhookRefused(400, "the body is not a Mailgun webhook object")
    verify(body, request, options)
    event = body.get("event-data")
    if not isinstance(event, dict):
        raise WebhookRefused(400, "the body has no event-data object")
    name, event_id = text(event.get("event"), 40), text(event.get("id"), 150)
    address = text(event.get("recipient"), 320).lower()
    if not event_id or not address:
        return []
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}  # type: ignore[union-attr]
    message_id = bracketed(headers.get("message-id"))  # type: ignore[union-attr]
    if name == "complained":
        return [ProviderEvent(event_id, EventKind.COMPLAINT, address, message_id, status="abuse", reason="spam complaint (Mailgun)")]
    if name != "failed":
        return []
    status = event.get("delivery-status") if isinstance(event.get("delivery-status"), dict) else {}
    reason = text(status.get("message")) or text(status.get("description")) or text(event.get("reason"))  # type: ignore[union-attr]
    kind = EventKind.HARD if text(event.get("severity"), 20) == "permanent" else EventKind.SOFT
    code = text(status.get("code"), 10)  # type: ignore[union-attr]
    return [ProviderEvent(event_id, kind, address, message_id, status=status_in(reason, status.get("description")) or code, reason=reason)]  # type: ignore[union-attr]
