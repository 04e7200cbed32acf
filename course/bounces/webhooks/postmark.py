"""Postmark. Postmark signs nothing; its webhook URL carries HTTP Basic credentials
(https://postmark:<secret>@example.org/webhooks/postmark), and the password must be
COURSE_WEBHOOK_POSTMARK_SECRET (compared in constant time; the user name is not checked).

One event per request: RecordType Bounce (HardBounce and BadEmailAddress are hard; SoftBounce,
Transient, DnsError and Blocked soft; auto-responders and the rest no bounce) or SpamComplaint.
Keyed by Postmark's ID. Postmark's MessageID is its own, not our Message-ID: the event is matched
by its address (course/bounces/record.py, step 1's last rule for verified webhooks)."""

from __future__ import annotations

import base64
import binascii
import hmac

from course.bounces.webhooks.events import EventKind, ProviderEvent, WebhookOptions, WebhookRefused, WebhookRequest, json_body, status_in, text

_HARD = {"HardBounce", "BadEmailAddress"}
_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked"}


def verify(request: WebhookRequest, options: WebhookOptions) -> None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise WebhookRefused(401, "Basic credentials are missing (put them in the webhook URL)")
    try:
        _, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise WebhookRefused(401, "the Basic credentials are not base64") from error
    if not hmac.compare_digest(password.encode(), options.postmark_secret.encode()):
        raise WebhookRefused(401, "the Basic password is not COURSE_WEBHOOK_POSTMARK_SECRET")


def read(request: WebhookRequest, options: WebhookOptions) -> list[ProviderEvent]:
    verify(request, options)
    event = json_body(request)
    if not isinstance(event, dict):
        raise WebhookRefused(400, "the body is not a Postmark event object")
    record_type, bounce_type = text(event.get("RecordType"), 40), text(event.get("Type"), 40)
    event_id = text(event.get("ID"), 100)
    address = text(event.get("Email"), 320).lower()
    if not event_id or not address:
        return []  # a delivery, open or click event: no bounce
    reason = text(event.get("Details")) or text(event.get("Description"))
    if record_type == "SpamComplaint" or bounce_type == "SpamComplaint":
        return [ProviderEvent(f"complaint:{event_id}", EventKind.COMPLAINT, address, status="abuse", reason="spam complaint (Postmark)")]
    if record_type != "Bounce" or bounce_type not in _HARD | _SOFT:
        return []
    kind = EventKind.HARD if bounce_type in _HARD else EventKind.SOFT
    return [ProviderEvent(f"bounce:{event_id}", kind, address, status=status_in(reason), reason=f"{bounce_type}: {reason}"[:1000])]
