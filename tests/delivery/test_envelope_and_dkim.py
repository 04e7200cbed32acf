"""The last touches to a sent message, against a real SMTP server: the envelope sender is a signed
VERP address naming the delivery when a bounce domain is set (the From address when not), and a
message from a domain with a DKIM key carries a signature that dkimpy verifies on the bytes the
server received."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest
from sqlalchemy.orm import Session, sessionmaker

from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.delivery.dkim import DkimKeyError, DkimSigner
from course.delivery.envelope import delivery_of_verp, verp_address
from course.delivery.links import signer_from_settings
from course.delivery.render import Renderer
from course.ledger import message_ids_from_secret
from course.delivery.sending import Sender
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from course.settings import DkimKey, Settings
from tests.support.pipeline_fixtures import enroll_people, make_course
from tests.support.smtp_server import RecordingSMTPServer

SECRET = "a-secret-for-verp-tests-0123456789abcdef"


# --- VERP, pure -------------------------------------------------------------------------------


def test_a_verp_address_names_its_delivery_and_nothing_else_reads_as_one() -> None:
    address = verp_address(1234, secret=SECRET, domain="bounces.example.org")
    local, _, domain = address.partition("@")
    assert domain == "bounces.example.org" and local.startswith("bounce+1234-") and len(local) <= 64
    assert delivery_of_verp(address, secret=SECRET, domain="bounces.example.org") == 1234
    # Relays may change the case or wrap it in angle brackets.
    assert delivery_of_verp(f"<{address.upper()}>", secret=SECRET, domain="bounces.example.org") == 1234
    forged = address.replace("bounce+1234-", "bounce+1235-")
    assert delivery_of_verp(forged, secret=SECRET, domain="bounces.example.org") is None
    assert delivery_of_verp(address, secret="another secret", domain="bounces.example.org") is None
    assert delivery_of_verp(address, secret=SECRET, domain="example.org") is None
    assert delivery_of_verp("lessons@bounces.example.org", secret=SECRET, domain="bounces.example.org") is None
    assert delivery_of_verp("", secret=SECRET, domain="bounces.example.org") is None


def test_a_bounce_domain_that_is_no_domain_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="COURSE_BOUNCE_DOMAIN"):
        Settings(bounce_domain="not a domain", var_dir=tmp_path)
    assert Settings(bounce_domain=" Bounces.Example.ORG ", var_dir=tmp_path).bounce_domain == "bounces.example.org"


# --- the sender -------------------------------------------------------------------------------


@pytest.fixture
def send_lessons(
    settings: Settings, sessions: sessionmaker[Session], clock: ManualClock, smtp_server: RecordingSMTPServer
) -> Iterator[Callable[..., list[int]]]:
    transports: list[SMTPTransport] = []
    runs = iter(range(1, 100))

    def run(**setting_overrides: object) -> list[int]:
        configured = settings.model_copy(update=setting_overrides)
        with sessions.begin() as session:
            run_number = next(runs)
            course = make_course(session, now=clock.now(), slug=f"bread{run_number}", lessons=1)
            enroll_people(session, course, [f"ann{run_number}@example.org", f"ben{run_number}@example.org"], now=clock.now())
        tasks: list[tuple[list[int], str]] = []
        dispatch_due(sessions, settings=configured, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token)))
        [(ids, token)] = tasks
        transport = SMTPTransport(SMTPConfig(configured.smtp_host, configured.smtp_port, timeout=5))
        transports.append(transport)
        sender = Sender(
            configured,
            sessions=sessions,
            transport=transport,
            renderer=Renderer(configured.templates_dir),
            signer=signer_from_settings(configured),
            clock=clock,
        )
        assert sender.send_claimed(ids, token).sent == len(ids)
        return ids

    yield run
    for transport in transports:
        transport.close()


def test_without_a_bounce_domain_the_envelope_sender_is_the_from_address(
    send_lessons: Callable[..., list[int]], smtp_server: RecordingSMTPServer
) -> None:
    send_lessons()
    assert {mail.envelope_from for mail in smtp_server.received} == {"lessons@example.com"}
    assert all("DKIM-Signature" not in mail.message for mail in smtp_server.received)


def test_with_a_bounce_domain_each_message_has_a_verp_envelope_sender_naming_its_delivery(
    send_lessons: Callable[..., list[int]], smtp_server: RecordingSMTPServer, settings: Settings
) -> None:
    ids = send_lessons(bounce_domain="bounces.example.org")
    by_recipient = {mail.envelope_to[0]: mail for mail in smtp_server.received}
    assert len(by_recipient) == 2
    found = set()
    for mail in by_recipient.values():
        delivery_id = delivery_of_verp(mail.envelope_from, secret=settings.secret_key, domain="bounces.example.org")
        assert delivery_id is not None, mail.envelope_from
        assert mail.message["Message-ID"] == message_ids_from_secret(settings.list_id_domain, settings.secret_key).for_delivery(delivery_id)
        assert mail.message["From"].endswith("<lessons@example.com>")  # the reader still sees the course's address
        found.add(delivery_id)
    assert found == set(ids)


def _rsa_key(directory: Path, name: str) -> tuple[Path, bytes]:
    """A fresh 2048-bit RSA key in PEM, and its public half as the `p=` of a DNS record."""
    private = directory / f"{name}.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public_der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return private, base64.b64encode(public_der)


def test_a_sent_message_carries_a_dkim_signature_that_verifies(
    send_lessons: Callable[..., list[int]], smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    old_key, old_public = _rsa_key(tmp_path, "old")
    new_key, new_public = _rsa_key(tmp_path, "new")
    records = {
        b"2026a._domainkey.example.com.": b"v=DKIM1; k=rsa; p=" + old_public,
        b"2026b._domainkey.example.com.": b"v=DKIM1; k=rsa; p=" + new_public,
    }
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        looked_up.append(name)
        return records.get(name, b"")

    send_lessons(dkim={"Example.com": DkimKey(selector="2026a", private_key_file=old_key)})
    first = smtp_server.received
    assert len(first) == 2
    for mail in first:
        assert mail.data.startswith(b"DKIM-Signature: ")
        signature = mail.message["DKIM-Signature"]
        assert "d=example.com" in signature and "s=2026a" in signature
        signed = signature.split("h=", 1)[1].split(";", 1)[0].lower()
        for header in ("from", "to", "subject", "message-id", "list-unsubscribe", "list-unsubscribe-post"):
            assert header in signed
        assert dkim.verify(mail.data, dnsfunc=dns)
        # One changed byte of the body, and the signature no longer holds.
        assert not dkim.verify(mail.data.replace(b"Paragraph of", b"Paragraph on"), dnsfunc=dns)
    assert b"2026a._domainkey.example.com." in looked_up

    # Rotation: a new selector and file; mail signed before still verifies against the old record.
    smtp_server.clear()
    send_lessons(dkim={"example.com": DkimKey(selector="2026b", private_key_file=new_key)})
    for mail in smtp_server.received:
        assert "s=2026b" in mail.message["DKIM-Signature"]
        assert dkim.verify(mail.data, dnsfunc=dns)
    assert all(dkim.verify(mail.data, dnsfunc=dns) for mail in first)


def test_a_dkim_key_that_cannot_be_read_stops_the_sender_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(DkimKeyError, match="missing.pem"):
        DkimSigner.from_settings(Settings(var_dir=tmp_path, dkim={"example.com": {"selector": "s1", "private_key_file": str(missing)}}))
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    with pytest.raises(DkimKeyError, match="not a PEM private key"):
        DkimSigner.from_settings(Settings(var_dir=tmp_path, dkim={"example.com": {"selector": "s1", "private_key_file": str(not_a_key)}}))


def test_mail_from_a_domain_without_a_key_goes_out_unsigned(tmp_path: Path) -> None:
    key, _ = _rsa_key(tmp_path, "k")
    signer = DkimSigner.from_settings(Settings(var_dir=tmp_path, dkim={"example.org": {"selector": "s1", "private_key_file": str(key)}}))
    message = b"From: a@example.net\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"
    assert signer.sign(message, "a@example.net") == message
    assert signer.sign(message, "a@Example.ORG").startswith(b"DKIM-Signature: ")
