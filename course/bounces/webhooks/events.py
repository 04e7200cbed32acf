"""What every provider module shares: the normalised event, the request, the options, and the
small readers of their payloads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from course.settings import Settings


class Provider(StrEnum):
    SES = "ses"
    POSTMARK = "postmark"
    SENDGRID = "sendgrid"
    MAILGUN = "mailgun"
    GENERIC = "generic"


class EventKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    SUBSCRIBE = "subscribe"  # an SNS subscription to confirm (its SubscribeURL in `reason`)


class WebhookRefused(ValueError):
    """The request is not from the provider, or not something it sends: `status` is the answer
    (401: signature, 400: body). The message says which check failed, for the provider's log."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ProviderEvent:
    """One bounce or complaint, as every provider's payload is normalised."""

    event_id: str  # the provider's id of the event (unique per provider)
    kind: EventKind
    recipient: str = ""
    message_id: str = ""  # "<...>", the Message-ID we sent, when the provider names it
    return_path: str = ""  # the VERP envelope sender, when the provider names it
    status: str = ""  # "5.1.1", or a complaint's feedback type
    reason: str = ""


@dataclass(frozen=True)
class WebhookRequest:
    body: bytes
    headers: Mapping[str, str]  # lower-case names
    now: datetime  # wall clock, for signed timestamps


# url -> the PEM bytes at it (the SNS signing certificate); tests give a local one.
CertificateFetcher = Callable[[str], bytes]


@dataclass(frozen=True)
class WebhookOptions:
    """Every webhook setting, in one place. An empty secret turns its provider off."""

    ses_topic_arns: tuple[str, ...] = ()
    postmark_secret: str = ""
    sendgrid_public_key: str = ""
    mailgun_signing_key: str = ""
    generic_secret: str = ""
    max_age_seconds: int = 900  # how old a signed timestamp may be (SendGrid, Mailgun, generic)
    certificates: CertificateFetcher | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, certificates: CertificateFetcher | None = None) -> WebhookOptions:
        return cls(
            ses_topic_arns=tuple(settings.webhook_ses_topic_arn_list),
            postmark_secret=settings.webhook_postmark_secret,
            sendgrid_public_key=settings.webhook_sendgrid_public_key,
            mailgun_signing_key=settings.webhook_mailgun_signing_key,
            generic_secret=settings.webhook_generic_secret,
            max_age_seconds=settings.webhook_max_age_seconds,
            certificates=certificates,
        )

    def enabled(self, provider: Provider) -> bool:
        return bool(
            {
                Provider.SES: self.ses_topic_arns,
                Provider.POSTMARK: self.postmark_secret,
                Provider.SENDGRID: self.sendgrid_public_key,
                Provider.MAILGUN: self.mailgun_signing_key,
                Provider.GENERIC: self.generic_secret,
            }[provider]
        )


# --- What the provider modules share ----------------------------------------------------------


def json_body(request: WebhookRequest) -> object:
    import json

    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as error:
        raise WebhookRefused(400, f"the body is not JSON ({error})") from error


def check_fresh(timestamp: str, request: WebhookRequest, options: WebhookOptions) -> None:
    """A signed Unix timestamp within max_age_seconds of now (either way): an old signed request
    replayed later is refused even before its event ids are looked up."""
    try:
        signed_at = float(timestamp)
    except (TypeError, ValueError) as error:
        raise WebhookRefused(401, f"the signed timestamp {str(timestamp)[:40]!r} is not a number") from error
    if abs(request.now.timestamp() - signed_at) > options.max_age_seconds:
        raise WebhookRefused(401, f"the signed timestamp is more than {options.max_age_seconds} s from now")


def text(value: object, limit: int = 1000) -> str:
    """One line of at most `limit` characters, whatever the payload held there."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    return " ".join(str(value).replace("\x00", " ").split())[:limit]


def bracketed(message_id: object) -> str:
    """A Message-ID as we store it, "<id@host>", from one given with or without its brackets."""
    value = text(message_id, 298).strip("<>").strip()
    return f"<{value}>" if value else ""


def status_in(*values: object) -> str:
    """The first enhanced status code (5.1.1) in the given texts."""
    import re

    for value in values:
        found = re.search(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b", text(value))
        if found:
            return ".".join(found.groups())
    return ""
