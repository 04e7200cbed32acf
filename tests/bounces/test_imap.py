"""The bounce mailbox over IMAP against a real server: Debian's dovecot, an instance of the test's
own (tests/support/imap_server.py) with a self-signed certificate the client is told to trust.
Returned mail about lessons really sent (tests/bounces/test_record.py's fixtures) is put in the
mailbox over IMAP; one poll applies it and moves it out, so a second poll applies nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from course.bounces.imap import ImapConfig, ImapMailbox
from course.bounces.mailbox import MailboxError
from course.bounces.poll import poll
from course.bounces.record import Action, BounceOptions
from course.clock import ManualClock
from course.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
from course.settings import Settings
from tests.bounces.test_corpus import CORPUS
from tests.bounces.test_record import sent, status_of, timeline_of, verp_settings  # noqa: F401  (fixtures)
from tests.cli.test_cli import COURSE, environment
from tests.support.imap_server import DovecotServer, start_dovecot
from tests.support.smtp_server import RecordingSMTPServer


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    # Not under pytest's tmp_path: that is private to this user, and dovecot's mail processes run
    # as another one when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="course-dovecot-"))
    root.chmod(0o755)
    server = start_dovecot(root / "server")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def config_of(server: DovecotServer, **changes: object) -> ImapConfig:
    values: dict[str, object] = dict(
        host="localhost", port=server.tls_port, user=server.user, password=server.password, ca_file=str(server.ca_file), timeout=10
    )
    values.update(changes)
    return ImapConfig(**values)  # type: ignore[arg-type]


def sample(name: str, address: str, sent_to: dict[str, tuple[str, str]]) -> bytes:
    envelope_from, message_id = sent_to[address]
    text = (CORPUS / f"{name}.eml").read_text(encoding="utf-8")
    text = text.replace("{{VERP}}", envelope_from).replace("{{RCPT}}", address).replace("{{MESSAGE_ID}}", message_id)
    return text.replace("\n", "\r\n").encode("utf-8")


def test_one_poll_applies_the_mailbox_and_moves_each_message_out(
    dovecot: DovecotServer, sent: dict[str, tuple[str, str]], sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock
) -> None:
    dovecot.append(sample("postfix-user-unknown", "ann@example.org", sent))
    dovecot.append(sample("yahoo-complaint-arf", "ben@example.org", sent))
    dovecot.append(sample("gmail-vacation", "cy@example.org", sent))
    options = BounceOptions.from_settings(verp_settings)
    with ImapMailbox(config_of(dovecot)) as mailbox:
        result = poll(mailbox, sessions, options=options, now=clock.now)
    assert result.read == 3 and not result.errors
    assert result.actions == {Action.SUPPRESSED: 1, Action.COMPLAINED: 1, Action.IGNORED: 1}, result.applied
    assert status_of(sessions, "ann@example.org") == SubscriberStatus.BOUNCED
    assert status_of(sessions, "ben@example.org") == SubscriberStatus.COMPLAINED
    assert status_of(sessions, "cy@example.org") == SubscriberStatus.ACTIVE
    assert (dovecot.count("INBOX"), dovecot.count("Processed")) == (0, 3)
    # Read again: nothing is left to read, and the moved messages stay where they are.
    with ImapMailbox(config_of(dovecot)) as mailbox:
        again = poll(mailbox, sessions, options=options, now=clock.now)
    assert (again.read, dict(again.actions)) == (0, {})
    # A message put back (a person dragging it to the inbox) is recognised as already recorded.
    dovecot.append(sample("postfix-user-unknown", "ann@example.org", sent))
    with ImapMailbox(config_of(dovecot)) as mailbox:
        third = poll(mailbox, sessions, options=options, now=clock.now)
    assert third.actions == {Action.ALREADY_RECORDED: 1}


def test_starttls_and_deleting_instead_of_moving(
    dovecot: DovecotServer, sent: dict[str, tuple[str, str]], sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock
) -> None:
    dovecot.append(sample("exim-unroutable", "dee@example.org", sent), folder="Bounces")
    config = config_of(dovecot, port=dovecot.starttls_port, tls="starttls", folder="Bounces", done_folder="")
    with ImapMailbox(config) as mailbox:
        result = poll(mailbox, sessions, options=BounceOptions.from_settings(verp_settings), now=clock.now)
    assert result.actions == {Action.SUPPRESSED: 1}
    assert status_of(sessions, "dee@example.org") == SubscriberStatus.BOUNCED
    assert (dovecot.count("Bounces"), dovecot.count("Processed")) == (0, 0)  # expunged, not moved


def test_a_mailbox_that_cannot_be_read_is_named_and_nothing_is_lost(dovecot: DovecotServer, sessions: sessionmaker[Session], clock: ManualClock, verp_settings: Settings) -> None:
    dovecot.append(b"From: mailer-daemon@example.net\r\nSubject: x\r\n\r\nx\r\n")
    options = BounceOptions.from_settings(verp_settings)
    cases = {
        "certificate": config_of(dovecot, ca_file=""),  # self-signed: the system's CAs refuse it
        "login": config_of(dovecot, password="wrong"),
        "folder": config_of(dovecot, folder="No such folder"),
    }
    for case, config in cases.items():
        with pytest.raises(MailboxError) as refused, ImapMailbox(config) as mailbox:
            poll(mailbox, sessions, options=options, now=clock.now)
        message = str(refused.value)
        assert message.startswith(f"bounce mailbox imaps://bounces@localhost:{dovecot.tls_port}/"), (case, message)
        assert "wrong" not in message and dovecot.password not in message, message
    assert dovecot.count("INBOX") == 1


def test_course_bounces_poll_reads_the_configured_mailbox(dovecot: DovecotServer, tmp_path: Path) -> None:
    """The command as a user runs it, settings from the environment."""
    dovecot.append(b"From: reader@example.com\r\nSubject: thanks\r\nMessage-ID: <r1@example.com>\r\n\r\nthanks!\r\n")
    env = environment(tmp_path)
    missing = subprocess.run([COURSE, "bounces", "poll"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "COURSE_BOUNCE_IMAP_HOST" in missing.stderr
    env.update(
        COURSE_BOUNCE_IMAP_HOST="localhost", COURSE_BOUNCE_IMAP_PORT=str(dovecot.tls_port), COURSE_BOUNCE_IMAP_USER=dovecot.user,
        COURSE_BOUNCE_IMAP_PASSWORD=dovecot.password, COURSE_BOUNCE_IMAP_CA_FILE=str(dovecot.ca_file),
    )  # fmt: skip
    done = subprocess.run([COURSE, "bounces", "poll", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"read": 1, "actions": {"ignored": 1}, "errors": []}
    assert (dovecot.count("INBOX"), dovecot.count("Processed")) == (0, 1)


def test_beat_polls_the_mailbox_on_its_interval(dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from course.settings import get_settings
    from worker.bounce_tasks import poll_bounce_mailbox
    from worker.config import celery_config

    for name in [name for name in os.environ if name.startswith("COURSE_")]:
        monkeypatch.delenv(name)
    for name, value in environment(tmp_path).items():
        if name.startswith("COURSE_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("COURSE_BOUNCE_POLL_INTERVAL_SECONDS", "120")
    get_settings.cache_clear()
    try:
        entry = celery_config(get_settings(), "memory://")["beat_schedule"]["poll-bounce-mailbox"]
        assert (entry["task"], entry["schedule"]) == ("course.poll_bounces", 120.0)
        assert poll_bounce_mailbox() == {}  # no mailbox configured: nothing to do
        from course import schema

        schema.upgrade()
        dovecot.append(b"From: reader@example.com\r\nSubject: thanks\r\nMessage-ID: <r2@example.com>\r\n\r\nthanks!\r\n")
        monkeypatch.setenv("COURSE_BOUNCE_IMAP_HOST", "localhost")
        monkeypatch.setenv("COURSE_BOUNCE_IMAP_PORT", str(dovecot.tls_port))
        monkeypatch.setenv("COURSE_BOUNCE_IMAP_USER", dovecot.user)
        monkeypatch.setenv("COURSE_BOUNCE_IMAP_PASSWORD", dovecot.password)
        monkeypatch.setenv("COURSE_BOUNCE_IMAP_CA_FILE", str(dovecot.ca_file))
        get_settings.cache_clear()
        assert poll_bounce_mailbox() == {"read": 1, "ignored": 1, "errors": 0}
        assert dovecot.count("INBOX") == 0
    finally:
        get_settings.cache_clear()


def test_mail_to_a_readers_list_unsubscribe_address_unsubscribes_them(
    dovecot: DovecotServer, sent: dict[str, tuple[str, str]], sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock,
    smtp_server: RecordingSMTPServer,
) -> None:
    """The mailto of List-Unsubscribe is the reader's own signed address under the bounce domain;
    a mail client's unsubscribe mail to it, read from the bounce mailbox, unsubscribes that reader
    from that course (once, however often it is read); a made-up one does nothing."""
    received = {mail.envelope_to[0]: mail.message for mail in smtp_server.received}
    header = received["ann@example.org"]["List-Unsubscribe"]
    mailto = re.search(r"<mailto:([^>]+)>", header)
    assert mailto is not None and mailto.group(1).startswith("unsubscribe+") and mailto.group(1).endswith("@bounces.example.org"), header
    address = mailto.group(1)
    assert address != re.search(r"<mailto:([^>]+)>", received["ben@example.org"]["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    unsubscribe_mail = f"From: Ann <ann@example.org>\r\nTo: {address}\r\nSubject: unsubscribe\r\nMessage-ID: <u1@example.org>\r\n\r\nThis message was automatically generated by Gmail.\r\n"
    dovecot.append(unsubscribe_mail.encode())
    forged = address.replace("unsubscribe+", "unsubscribe+9")  # another subscriber id under the same signature
    dovecot.append(f"From: x@example.net\r\nTo: {forged}\r\nSubject: unsubscribe\r\nMessage-ID: <u2@example.net>\r\n\r\n.\r\n".encode())
    options = BounceOptions.from_settings(verp_settings)
    with ImapMailbox(config_of(dovecot)) as mailbox:
        result = poll(mailbox, sessions, options=options, now=clock.now)
    assert result.actions == {Action.UNSUBSCRIBED: 1, Action.IGNORED: 1}, result.applied
    assert timeline_of(sessions, "ann@example.org")[-1] == "unsubscribed"
    assert status_of(sessions, "ben@example.org") == SubscriberStatus.ACTIVE
    with sessions() as session:
        enrollment = session.scalars(select(Enrollment).join(Subscriber).where(Subscriber.email == "ann@example.org")).one()
        assert enrollment.status != EnrollmentStatus.ACTIVE
    dovecot.append(unsubscribe_mail.encode())  # sent twice by an impatient reader: one event
    with ImapMailbox(config_of(dovecot)) as mailbox:
        again = poll(mailbox, sessions, options=options, now=clock.now)
    assert again.actions == {Action.ALREADY_RECORDED: 1}
    assert timeline_of(sessions, "ann@example.org").count("unsubscribed") == 1
