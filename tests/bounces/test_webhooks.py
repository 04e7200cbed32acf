"""Provider webhooks over HTTP, on PostgreSQL and SQLite: lessons really sent (test_record.py's
fixtures), then each provider's signed report about one of them posted to /webhooks/<provider>.
Verified requests are stored once per event id and applied by the task's function; forged, stale,
replayed, oversized and too frequent requests change nothing. The SNS signing certificate is one
made here, served by the injectable fetcher under an AWS-shaped URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.bounces.record import BounceOptions
from course.bounces.webhooks.generic import signature_header
from course.bounces.webhooks.ses import string_to_sign
from course.bounces.webhooks.store import apply_pending
from course.clock import ManualClock
from course.models import BounceReport, SubscriberStatus, WebhookEvent
from course.settings import Settings
from course.web.app import create_app
from tests.bounces.test_record import sent, status_of, timeline_of, verp_settings  # noqa: F401  (fixtures)

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
POSTMARK_SECRET = "postmark-webhook-secret"
MAILGUN_KEY = "key-mailgun-signing"
GENERIC_SECRET = "generic-webhook-secret"


def _rsa_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2020, 1, 1, tzinfo=timezone.utc)).not_valid_after(datetime(2099, 1, 1, tzinfo=timezone.utc))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, certificate.public_bytes(serialization.Encoding.PEM)


SNS_KEY, SNS_CERT = _rsa_certificate()
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()


@pytest.fixture
def hook_settings(verp_settings: Settings) -> Settings:
    return verp_settings.model_copy(
        update={
            "webhook_ses_topic_arns": TOPIC, "webhook_postmark_secret": POSTMARK_SECRET, "webhook_sendgrid_public_key": SENDGRID_PUBLIC,
            "webhook_mailgun_signing_key": MAILGUN_KEY, "webhook_generic_secret": GENERIC_SECRET, "webhook_max_bytes": 64 * 1024,
        }
    )  # fmt: skip


@pytest.fixture
def fetched() -> list[str]:
    return []


@pytest.fixture
def client(hook_settings: Settings, fetched: list[str], clock: ManualClock) -> Iterator[TestClient]:
    app = create_app(hook_settings)

    def certificates(url: str) -> bytes:
        fetched.append(url)
        return SNS_CERT

    app.state.sns_certificates = certificates
    with TestClient(app) as test_client:
        yield test_client


def sns(message: dict[str, Any], *, kind: str = "Notification", version: str = "1", **changes: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "Type": kind, "MessageId": f"sns-{abs(hash(json.dumps(message, sort_keys=True)))}", "TopicArn": TOPIC,
        "Message": json.dumps(message), "Timestamp": "2026-03-05T12:00:00.000Z", "SignatureVersion": version, "SigningCertURL": CERT_URL,
    }  # fmt: skip
    if kind == "SubscriptionConfirmation":
        envelope.update(Token="tok", SubscribeURL="https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok")
    envelope.update({key: value for key, value in changes.items() if key != "sign_as"})
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signer = changes.get("sign_as", SNS_KEY)
    envelope["Signature"] = base64.b64encode(signer.sign(string_to_sign(envelope), padding.PKCS1v15(), algorithm)).decode()
    return envelope


def ses_bounce(address: str, message_id: str, envelope_from: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type, "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
        },
        "mail": {"messageId": "0102018e-ses-own-id", "source": envelope_from, "commonHeaders": {"messageId": message_id}},
    }  # fmt: skip


def post_sns(client: TestClient, envelope: dict[str, Any]) -> Any:
    return client.post("/webhooks/ses", content=json.dumps(envelope), headers={"content-type": "text/plain; charset=UTF-8"})


def sendgrid_post(client: TestClient, events: list[dict[str, Any]], now: datetime, *, key: ec.EllipticCurvePrivateKey = SENDGRID_KEY, age: int = 0) -> Any:
    body = json.dumps(events).encode()
    timestamp = str(int(now.timestamp()) - age)
    signature = base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"content-type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}
    return client.post("/webhooks/sendgrid", content=body, headers=headers)


def mailgun_body(event: dict[str, Any], now: datetime, *, key: str = MAILGUN_KEY) -> dict[str, Any]:
    timestamp, token = str(int(now.timestamp())), "a" * 50
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event}


def generic_post(client: TestClient, body: dict[str, Any], now: datetime, *, secret: str = GENERIC_SECRET) -> Any:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json", "X-Course-Signature": signature_header(secret, raw, int(now.timestamp()))}
    return client.post("/webhooks/generic", content=raw, headers=headers)


Apply = Callable[[], dict[str, int]]


@pytest.fixture
def apply(sessions: sessionmaker[Session], hook_settings: Settings, clock: ManualClock) -> Callable[..., dict[str, int]]:
    def run(confirm: Callable[[str], None] | None = None) -> dict[str, int]:
        kwargs = {"confirm": confirm} if confirm is not None else {}
        return dict(apply_pending(sessions, options=BounceOptions.from_settings(hook_settings), now=clock.now, **kwargs))

    return run


def stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent)) or 0


def reports(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with sessions() as session:
        return [tuple(row) for row in session.execute(select(BounceReport.kind, BounceReport.source, BounceReport.status).order_by(BounceReport.id))]  # type: ignore[misc]


def test_an_ses_bounce_is_verified_stored_once_and_applied_once(
    client: TestClient, sent: dict[str, tuple[str, str]], sessions: sessionmaker[Session], apply: Callable[..., dict[str, int]], fetched: list[str]
) -> None:
    envelope_from, message_id = sent["ann@example.org"]
    envelope = sns(ses_bounce("ann@example.org", message_id, envelope_from))
    answer = post_sns(client, envelope)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 1, "new": 1}
    assert status_of(sessions, "ann@example.org") == SubscriberStatus.ACTIVE  # stored, not applied by the request
    assert fetched == [CERT_URL]
    assert post_sns(client, envelope).json() == {"received": 1, "new": 0}  # SNS retries: nothing new
    assert apply() == {"suppressed": 1}
    assert status_of(sessions, "ann@example.org") == SubscriberStatus.BOUNCED
    assert post_sns(client, envelope).json() == {"received": 1, "new": 0}
    assert apply() == {}
    assert reports(sessions) == [("hard", "webhook:ses", "5.1.1")]
    assert timeline_of(sessions, "ann@example.org")[-1] == "bounced"


def test_forged_ses_messages_are_refused_and_store_nothing(client: TestClient, sent: dict[str, tuple[str, str]], sessions: sessionmaker[Session], fetched: list[str]) -> None:
    envelope_from, message_id = sent["ann@example.org"]
    bounce = ses_bounce("ann@example.org", message_id, envelope_from)
    other_key, _ = _rsa_certificate()
    tampered = sns(bounce)
    tampered["Message"] = json.dumps(ses_bounce("ben@example.org", sent["ben@example.org"][1], sent["ben@example.org"][0]))
    forgeries = {
        "signed by another key": sns(bounce, sign_as=other_key),
        "message changed after signing": tampered,
        "certificate on another host": sns(bounce, SigningCertURL="https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem"),
        "certificate over http": sns(bounce, SigningCertURL=CERT_URL.replace("https", "http")),
        "certificate not a .pem": sns(bounce, SigningCertURL="https://sns.eu-west-1.amazonaws.com/x.txt"),
        "topic of someone else": sns(bounce, TopicArn="arn:aws:sns:eu-west-1:999999999999:theirs"),
        "unknown signature version": sns(bounce, SignatureVersion="9"),
    }
    for case, envelope in forgeries.items():
        answer = post_sns(client, envelope)
        assert answer.status_code == 401, (case, answer.text)
        assert answer.json()["detail"].startswith("ses webhook refused: "), case
    assert post_sns(client, sns(bounce, version="2")).status_code == 200  # SHA256withRSA is fine too
    assert client.post("/webhooks/ses", content=b"{not json", headers={"content-type": "text/plain"}).status_code == 400
    assert stored(sessions) == 1
    assert all(url == CERT_URL for url in fetched)  # no other host was ever asked for a certificate


def test_an_sns_subscription_is_confirmed_by_the_task(
    client: TestClient, sessions: sessionmaker[Session], apply: Callable[..., dict[str, int]]
) -> None:
    envelope = sns({"note": "confirm"}, kind="SubscriptionConfirmation")
    assert post_sns(client, envelope).status_code == 200
    evil = sns({"note": "confirm"}, kind="SubscriptionConfirmation", SubscribeURL="https://attacker.example/confirm")
    assert post_sns(client, evil).status_code == 400
    visited: list[str] = []
    assert apply(confirm=visited.append) == {"subscription-confirmed": 1}
    assert visited == ["https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok"]


def test_sendgrid_complaints_and_bounces_and_forgeries(
    client: TestClient, sent: dict[str, tuple[str, str]], sessions: sessionmaker[Session], apply: Callable[..., dict[str, int]], clock: ManualClock
) -> None:
    events = [
        {"email": "ben@example.org", "event": "spamreport", "sg_event_id": "sg-1", "smtp-id": sent["ben@example.org"][1]},
        {"email": "cy@example.org", "event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 no such user", "sg_event_id": "sg-2", "smtp-id": sent["cy@example.org"][1]},
        {"email": "dee@example.org", "event": "delivered", "sg_event_id": "sg-3"},
        {"email": "dee@example.org", "event": "open", "sg_event_id": "sg-4"},
    ]  # fmt: skip
    assert sendgrid_post(client, events, clock.now(), key=ec.generate_private_key(ec.SECP256R1())).status_code == 401
    assert sendgrid_post(client, events, clock.now(), age=3600).status_code == 401  # an old signed request, replayed
    answer = sendgrid_post(client, events, clock.now())
    assert answer.json() == {"received": 2, "new": 2}, answer.text
    assert apply() == {"complained": 1, "suppressed": 1}
    assert status_of(sessions, "ben@example.org") == SubscriberStatus.COMPLAINED
    assert status_of(sessions, "cy@example.org") == SubscriberStatus.BOUNCED
    assert status_of(sessions, "dee@example.org") == SubscriberStatus.ACTIVE


def test_mailgun_and_postmark_and_the_generic_format(
    client: TestClient, sent: dict[str, tuple[str, str]], sessions: sessionmaker[Session], apply: Callable[..., dict[str, int]], clock: ManualClock
) -> None:
    now = clock.now()
    failed = {
        "id": "mg-1", "event": "failed", "severity": "permanent", "recipient": "ann@example.org",
        "message": {"headers": {"message-id": sent["ann@example.org"][1].strip("<>")}},
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
    }  # fmt: skip
    assert client.post("/webhooks/mailgun", json=mailgun_body(failed, now, key="wrong")).status_code == 401
    assert client.post("/webhooks/mailgun", json=mailgun_body(failed, now)).json() == {"received": 1, "new": 1}
    postmark = {"RecordType": "Bounce", "ID": 42, "Type": "SoftBounce", "Email": "ben@example.org", "MessageID": "pm-own-id", "Details": "mailbox full"}
    forged = base64.b64encode(b"postmark:guess").decode()
    assert client.post("/webhooks/postmark", json=postmark, headers={"Authorization": f"Basic {forged}"}).status_code == 401
    assert client.post("/webhooks/postmark", json=postmark).status_code == 401
    good = base64.b64encode(f"postmark:{POSTMARK_SECRET}".encode()).decode()
    assert client.post("/webhooks/postmark", json=postmark, headers={"Authorization": f"Basic {good}"}).json() == {"received": 1, "new": 1}
    body = {"events": [{"id": "g-1", "type": "hard_bounce", "recipient": "cy@example.org", "return_path": sent["cy@example.org"][0], "status": "5.1.1"}]}
    assert generic_post(client, body, now, secret="wrong").status_code == 401
    assert generic_post(client, body, now).json() == {"received": 1, "new": 1}
    assert generic_post(client, {"events": [{"id": "g-2", "type": "bounce", "recipient": "x@example.org"}]}, now).status_code == 400
    assert apply() == {"suppressed": 2, "counted": 1}
    assert status_of(sessions, "ann@example.org") == SubscriberStatus.BOUNCED  # Mailgun, by our Message-ID
    assert status_of(sessions, "ben@example.org") == SubscriberStatus.ACTIVE  # Postmark's soft bounce, by address: counted
    assert timeline_of(sessions, "ben@example.org")[-1] == "soft_bounced"
    assert status_of(sessions, "cy@example.org") == SubscriberStatus.BOUNCED  # generic, by its VERP address
    assert sorted(source for _, source, _ in reports(sessions)) == ["webhook:generic", "webhook:mailgun", "webhook:postmark"]


def test_a_generic_event_about_no_delivery_of_ours_changes_nothing(
    client: TestClient, sent: dict[str, tuple[str, str]], sessions: sessionmaker[Session], apply: Callable[..., dict[str, int]], clock: ManualClock
) -> None:
    body = {"events": [{"id": "g-9", "type": "complaint", "recipient": "stranger@example.net", "message_id": "<nobody@example.net>"}]}
    assert generic_post(client, body, clock.now()).status_code == 200
    assert apply() == {"unmatched": 1}
    assert {status_of(sessions, address) for address in sent} == {SubscriberStatus.ACTIVE}


def test_oversized_unconfigured_and_too_frequent_requests(
    hook_settings: Settings, client: TestClient, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    big = {"events": [{"id": f"g-{n}", "type": "soft_bounce", "recipient": "a@example.org", "reason": "x" * 900} for n in range(100)]}
    answer = generic_post(client, big, clock.now())
    assert answer.status_code == 413
    assert answer.json() == {"detail": "request body larger than 64 KB"}  # JSON, as documented, not an HTML page
    assert stored(sessions) == 0
    off = create_app(hook_settings.model_copy(update={"webhook_mailgun_signing_key": ""}))
    with TestClient(off) as off_client:
        assert off_client.post("/webhooks/mailgun", json={}).status_code == 404
    limited = create_app(hook_settings.model_copy(update={"webhook_limit_per_minute": 3}))
    with TestClient(limited) as limited_client:
        codes = [limited_client.post("/webhooks/generic", json={"events": []}).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
