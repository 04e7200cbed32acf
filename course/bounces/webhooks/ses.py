"""Amazon SES, through an SNS topic's HTTPS subscription.

1. The body is an SNS message (JSON, sent as text/plain). Its Type is Notification,
   SubscriptionConfirmation or UnsubscribeConfirmation, and its TopicArn one of the configured
   COURSE_WEBHOOK_SES_TOPIC_ARNS (anyone can create a topic and point it at us).
2. SigningCertURL must be https on an SNS host of AWS (sns.<region>.amazonaws.com[.cn]) and name a
   .pem: the certificate that signs is AWS's, not one an attacker names.
3. The signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) is checked over the message's
   fields in the order AWS documents, with that certificate's key, which must be in its validity.
4. A SubscriptionConfirmation becomes a `subscribe` event: the task visits its SubscribeURL (also
   checked to be AWS's) once. A Notification's Message is SES's JSON: a Bounce (Permanent: hard;
   Transient, Undetermined: soft) or Complaint (not-spam feedback excepted), one event per
   recipient, keyed by the SNS MessageId and the address."""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.request
from datetime import timezone
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from course.bounces.webhooks.events import (
    EventKind,
    ProviderEvent,
    WebhookOptions,
    WebhookRefused,
    WebhookRequest,
    bracketed,
    json_body,
    status_in,
    text,
)

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERTIFICATE_BYTES = 64 * 1024


def is_aws_sns_url(url: str, *, pem: bool) -> bool:
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and parts.port in (None, 443)
        and not parts.username
        and bool(_SNS_HOST.match(parts.hostname or ""))
        and (not pem or parts.path.endswith(".pem"))
    )


def string_to_sign(message: dict[str, object]) -> bytes:
    """SNS's canonical form: each signed field present, "Name\\nvalue\\n", in AWS's order."""
    names = _SIGNED_FIELDS[str(message.get("Type"))]
    return "".join(f"{name}\n{message[name]}\n" for name in names if message.get(name) is not None).encode("utf-8")


def fetch_certificate(url: str) -> bytes:
    """The default fetcher: AWS's certificate over https (the URL was checked to be AWS's)."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - https to an AWS host only
        return response.read(MAX_CERTIFICATE_BYTES + 1)[:MAX_CERTIFICATE_BYTES]


@lru_cache(maxsize=32)
def _cached_certificate(url: str) -> bytes:
    # AWS rotates the certificate under a new URL, so one fetch per URL and process is enough.
    return fetch_certificate(url)


def verify(message: dict[str, object], request: WebhookRequest, options: WebhookOptions) -> None:
    """Steps 1-3 of the module's rules; raises WebhookRefused(401)."""
    kind = str(message.get("Type"))
    if kind not in _SIGNED_FIELDS:
        raise WebhookRefused(400, f"not an SNS message type: {kind[:40]!r}")
    if str(message.get("TopicArn")) not in options.ses_topic_arns:
        raise WebhookRefused(401, "the SNS topic is not one of COURSE_WEBHOOK_SES_TOPIC_ARNS")
    certificate_url = str(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
    if not is_aws_sns_url(certificate_url, pem=True):
        raise WebhookRefused(401, "SigningCertURL is not an https .pem on an SNS host of amazonaws.com")
    algorithm = _HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise WebhookRefused(401, "unknown SignatureVersion (1 and 2 are known)")
    missing = [name for name in _SIGNED_FIELDS[kind] if name != "Subject" and not isinstance(message.get(name), str)]
    if missing:
        raise WebhookRefused(400, f"the SNS message lacks {', '.join(missing)}")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError) as error:
        raise WebhookRefused(401, "the signature is not base64") from error
    fetch = options.certificates or _cached_certificate
    try:
        certificate = x509.load_pem_x509_certificate(fetch(certificate_url))
    except (OSError, ValueError) as error:
        raise WebhookRefused(401, f"the signing certificate could not be read ({error})") from error
    if not certificate.not_valid_before_utc <= request.now.astimezone(timezone.utc) <= certificate.not_valid_after_utc:
        raise WebhookRefused(401, "the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused(401, "the signing certificate's key is not RSA")
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature as error:
        raise WebhookRefused(401, "the SNS signature does not match") from error


def read(request: WebhookRequest, options: WebhookOptions) -> list[ProviderEvent]:
    message = json_body(request)
    if not isinstance(message, dict):
        raise WebhookRefused(400, "the body is not an SNS message")
    verify(message, request, options)
    sns_id = text(message.get("MessageId"), 100)
    if message["Type"] == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL", ""))
        if not is_aws_sns_url(url, pem=False):
            raise WebhookRefused(400, "SubscribeURL is not an https address on an SNS host of amazonaws.com")
        return [ProviderEvent(f"subscribe:{sns_id}", EventKind.SUBSCRIBE, reason=url[:1000])]
    if message["Type"] != "Notification":
        return []
    try:
        notification = json.loads(str(message["Message"]))
    except ValueError as error:
        raise WebhookRefused(400, "the SNS Message is not SES's JSON") from error
    return ses_events(sns_id, notification) if isinstance(notification, dict) else []


def _original(mail: dict[str, object]) -> tuple[str, str]:
    """The Message-ID we sent and the envelope sender (VERP), from SES's `mail` object."""
    message_id = ""
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
                message_id = bracketed(header.get("value"))
    common = mail.get("commonHeaders")
    if not message_id and isinstance(common, dict):
        message_id = bracketed(common.get("messageId"))
    return message_id, text(mail.get("source"), 320).lower()


def ses_events(sns_id: str, notification: dict[str, object]) -> list[ProviderEvent]:
    """Step 4: an SES notification (identity notifications and configuration-set events alike)."""
    kind = str(notification.get("notificationType") or notification.get("eventType") or "")
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    message_id, return_path = _original(mail)  # type: ignore[arg-type]
    events: list[ProviderEvent] = []
    if kind == "Bounce" and isinstance(notification.get("bounce"), dict):
        bounce: dict[str, object] = notification["bounce"]  # type: ignore[assignment]
        verdict = EventKind.HARD if bounce.get("bounceType") == "Permanent" else EventKind.SOFT
        for recipient in bounce.get("bouncedRecipients") or []:  # type: ignore[union-attr]
            if not isinstance(recipient, dict):
                continue
            address = text(recipient.get("emailAddress"), 320).lower()
            diagnostic = text(recipient.get("diagnosticCode")) or f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
            events.append(
                ProviderEvent(
                    f"{sns_id}:{address}"[:200], verdict, address, message_id, return_path,
                    status_in(recipient.get("status"), diagnostic), diagnostic,
                )  # fmt: skip
            )
    elif kind == "Complaint" and isinstance(notification.get("complaint"), dict):
        complaint: dict[str, object] = notification["complaint"]  # type: ignore[assignment]
        feedback_type = text(complaint.get("complaintFeedbackType"), 32) or "abuse"
        if feedback_type == "not-spam":
            return []
        for recipient in complaint.get("complainedRecipients") or []:  # type: ignore[union-attr]
            if isinstance(recipient, dict):
                address = text(recipient.get("emailAddress"), 320).lower()
                events.append(
                    ProviderEvent(f"{sns_id}:{address}"[:200], EventKind.COMPLAINT, address, message_id, return_path, feedback_type, "spam complaint (SES)")
                )
    return events
