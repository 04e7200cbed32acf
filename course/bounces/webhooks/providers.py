"""The providers by name: each one's reader (verify, then read its events)."""

from __future__ import annotations

from course.bounces.webhooks import generic, mailgun, postmark, sendgrid, ses
from course.bounces.webhooks.events import Provider, ProviderEvent, WebhookOptions, WebhookRequest

READERS = {
    Provider.SES: ses.read,
    Provider.POSTMARK: postmark.read,
    Provider.SENDGRID: sendgrid.read,
    Provider.MAILGUN: mailgun.read,
    Provider.GENERIC: generic.read,
}


def read_events(provider: Provider, request: WebhookRequest, options: WebhookOptions) -> list[ProviderEvent]:
    """Verify the request as `provider` signs it and read its bounces and complaints (other events,
    deliveries and opens, are dropped). Raises WebhookRefused."""
    return READERS[provider](request, options)
