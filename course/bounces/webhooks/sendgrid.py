"""SendGrid's signed event webhook.

1. X-Twilio-Email-Event-Webhook-Signature is a base64 ECDSA (P-256, SHA-256) signature over the
   X-Twilio-Email-Event-Webhook-Timestamp header followed by the raw body, made with the key whose
   public half is COURSE_WEBHOOK_SENDGRID_PUBLIC_KEY (base64 DER, as SendGrid shows it, or PEM).
2. The timestamp must be within COURSE_WEBHOOK_MAX_AGE_SECONDS of now.
3. The body is a JSON array of events: `bounce` (type bounce: hard; type blocked: soft) and
   `spamreport` (a complaint), each keyed by its sg_event_id; `smtp-id` is our Message-ID. The
   rest (delivered, deferred, dropped, opens) is no bounce."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

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

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


@lru_cache(maxsize=4)
def public_key(configured: str) -> ec.EllipticCurvePublicKey:
    value = configured.strip()
    try:
        if value.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(value.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(value))
    except (ValueError, binascii.Error) as error:
        raise ValueError(f"COURSE_WEBHOOK_SENDGRID_PUBLIC_KEY is not a public key ({error})") from error
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("COURSE_WEBHOOK_SENDGRID_PUBLIC_KEY is not an ECDSA key")
    return key


def verify(request: WebhookRequest, options: WebhookOptions) -> None:
    signature, timestamp = request.headers.get(SIGNATURE, ""), request.headers.get(TIMESTAMP, "")
    if not signature or not timestamp:
        raise WebhookRefused(401, "the X-Twilio-Email-Event-Webhook-Signature and -Timestamp headers are missing")
    check_fresh(timestamp, request, options)
    try:
        public_key(options.sendgrid_public_key).verify(
            base64.b64decode(signature, validate=True), timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error, ValueError) as error:
        raise WebhookRefused(401, "the SendGrid signature does not match") from error


def read(request: WebhookRequest, options: WebhookOptions) -> list[ProviderEvent]:
    verify(request, options)
    events = json_body(request)
    if not isinstance(events, list):
        raise WebhookRefused(400, "the body is not a JSON array of SendGrid events")
    found: list[ProviderEvent] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        name, event_id = text(event.get("event"), 40), text(event.get("sg_event_id"), 150)
        address = text(event.get("email"), 320).lower()
        if not event_id or not address:
            continue
        message_id = bracketed(event.get("smtp-id"))
        if name == "spamreport":
            found.append(ProviderEvent(event_id, EventKind.COMPLAINT, address, message_id, status="abuse", reason="spam complaint (SendGrid)"))
        elif name == "bounce":
            kind = EventKind.SOFT if text(event.get("type"), 20) == "blocked" else EventKind.HARD
            reason = text(event.get("reason"))
            found.append(ProviderEvent(event_id, kind, address, message_id, status=status_in(event.get("status"), reason), reason=reason))
    return found
