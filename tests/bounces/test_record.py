"""Returned mail applied to subscribers, on PostgreSQL and SQLite: lessons go out through a real SMTP
server with VERP envelope senders, the corpus's reports come back about those very messages (in a
folder, as `course bounces poll --folder` reads them), and each does what its verdict says."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.audience.subscriptions import SignupDetails, SignupOutcome, sign_up
from course.bounces.mailbox import FolderMailbox
from course.bounces.poll import PollReport, poll
from course.bounces.record import Action, BounceOptions
from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.delivery.links import signer_from_settings
from course.delivery.render import Renderer
from course.delivery.sending import Sender
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from course.models import BounceReport, Course, Delivery, DeliveryState, Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
from course.ratelimit import RateLimit
from course.settings import Settings
from tests.bounces.test_corpus import CORPUS
from tests.cli.test_cli import COURSE, environment
from tests.support.pipeline_fixtures import enroll_people, make_course
from tests.support.smtp_server import RecordingSMTPServer

BOUNCE_DOMAIN = "bounces.example.org"
PEOPLE = ["ann@example.org", "ben@example.org", "cy@example.org", "dee@example.org"]


@pytest.fixture
def verp_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"bounce_domain": BOUNCE_DOMAIN})


@pytest.fixture
def sent(verp_settings: Settings, sessions: sessionmaker[Session], clock: ManualClock, smtp_server: RecordingSMTPServer) -> dict[str, tuple[str, str]]:
    """Lesson 1 sent to each of PEOPLE: address -> (envelope sender, Message-ID) as received."""
    with sessions.begin() as session:
        course = make_course(session, now=clock.now(), lessons=3)
        enroll_people(session, course, PEOPLE, now=clock.now())
    tasks: list[tuple[list[int], str]] = []
    dispatch_due(sessions, settings=verp_settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token)))
    transport = SMTPTransport(SMTPConfig(verp_settings.smtp_host, verp_settings.smtp_port, timeout=5))
    try:
        sender = Sender(
            verp_settings, sessions=sessions, transport=transport, renderer=Renderer(verp_settings.templates_dir),
            signer=signer_from_settings(verp_settings), clock=clock,
        )  # fmt: skip
        for ids, token in tasks:
            sender.send_claimed(ids, token)
    finally:
        transport.close()
    return {mail.envelope_to[0]: (mail.envelope_from, mail.message["Message-ID"]) for mail in smtp_server.received}


Returned = Callable[..., Path]


@pytest.fixture
def returned(tmp_path: Path, sent: dict[str, tuple[str, str]]) -> Returned:
    """Write a corpus sample about the message sent to `address` into the bounce folder."""
    folder = tmp_path / "bounces"
    folder.mkdir()
    counter = iter(range(1, 1000))

    def write(sample: str, address: str, *, verp: str | None = None, report_id: str | None = None) -> Path:
        envelope_from, message_id = sent[address]
        text = (CORPUS / f"{sample}.eml").read_text(encoding="utf-8")
        text = text.replace("{{VERP}}", verp if verp is not None else envelope_from)
        text = text.replace("{{RCPT}}", address).replace("{{MESSAGE_ID}}", message_id)
        number = next(counter)
        if report_id is not None:
            lines = text.split("\n")
            text = "\n".join(f"Message-ID: {report_id}" if line.lower().startswith("message-id:") and index < 15 else line for index, line in enumerate(lines))
        path = folder / f"{number:03d}-{sample}.eml"
        path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
        return folder

    return write


def run_poll(folder: Path, sessions: sessionmaker[Session], settings: Settings, now: datetime) -> PollReport:
    return poll(FolderMailbox(folder), sessions, options=BounceOptions.from_settings(settings), now=lambda: now)


def status_of(sessions: sessionmaker[Session], address: str) -> str:
    with sessions() as session:
        return session.scalar(select(Subscriber.status).where(Subscriber.email == address)) or ""


def open_rows(sessions: sessionmaker[Session], address: str) -> int:
    with sessions() as session:
        return session.scalar(
            select(func.count()).select_from(Delivery).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == address, Delivery.state.in_((DeliveryState.PENDING, DeliveryState.HELD)))
        ) or 0  # fmt: skip


def test_a_hard_bounce_suppresses_its_address_once_however_often_it_is_read(
    returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock
) -> None:
    assert open_rows(sessions, "ann@example.org") == 2
    folder = returned("postfix-user-unknown", "ann@example.org")
    result = run_poll(folder, sessions, verp_settings, clock.now())
    assert result.actions == {Action.SUPPRESSED: 1}, result
    assert status_of(sessions, "ann@example.org") == SubscriberStatus.BOUNCED
    assert open_rows(sessions, "ann@example.org") == 0  # lessons 2 and 3 cancelled
    assert status_of(sessions, "ben@example.org") == SubscriberStatus.ACTIVE
    again = run_poll(folder, sessions, verp_settings, clock.now())
    assert again.actions == {Action.ALREADY_RECORDED: 1}
    with sessions() as session:
        [stored] = session.scalars(select(BounceReport)).all()
        assert (stored.kind, stored.status, stored.source) == ("hard", "5.1.1", "folder")
        assert "User unknown" in stored.reason


@pytest.mark.parametrize("sample", ["gmail-no-such-user", "exchange-recipient-not-found", "exim-unroutable", "ses-bounce", "yahoo-plain-bounce"])
def test_each_providers_hard_bounce_suppresses(
    sample: str, returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock
) -> None:
    result = run_poll(returned(sample, "ben@example.org"), sessions, verp_settings, clock.now())
    assert result.actions == {Action.SUPPRESSED: 1}, result.applied
    assert status_of(sessions, "ben@example.org") == SubscriberStatus.BOUNCED


def test_soft_bounces_suppress_at_the_threshold_within_the_window(
    returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock
) -> None:
    start = clock.now()
    # One 40 days ago falls out of the 30-day window: it does not count.
    run_poll(returned("postfix-mailbox-full", "cy@example.org", report_id="<soft-0@mx>"), sessions, verp_settings, start - timedelta(days=40))
    folder = returned("postfix-expired-4xx", "cy@example.org", report_id="<soft-1@mx>")
    assert run_poll(folder, sessions, verp_settings, start).actions[Action.COUNTED] == 1
    returned("postfix-mailbox-full", "cy@example.org", report_id="<soft-2@mx>")
    second = run_poll(folder, sessions, verp_settings, start + timedelta(days=1))
    assert second.actions == {Action.ALREADY_RECORDED: 2, Action.COUNTED: 1}, second.applied
    assert status_of(sessions, "cy@example.org") == SubscriberStatus.ACTIVE
    returned("postfix-expired-4xx", "cy@example.org", report_id="<soft-3@mx>")
    third = run_poll(folder, sessions, verp_settings, start + timedelta(days=2))
    assert third.actions[Action.SUPPRESSED] == 1
    assert status_of(sessions, "cy@example.org") == SubscriberStatus.BOUNCED
    assert timeline_of(sessions, "cy@example.org") == ["soft_bounced"] * 3 + ["bounced"]  # each counted one, then the suppression


def timeline_of(sessions: sessionmaker[Session], address: str) -> list[str]:
    from course.models import SubscriberEvent

    with sessions() as session:
        return list(
            session.scalars(
                select(SubscriberEvent.kind).join(Subscriber, Subscriber.id == SubscriberEvent.subscriber_id)
                .where(Subscriber.email == address).order_by(SubscriberEvent.occurred_at, SubscriberEvent.id)
            )
        )


@pytest.mark.parametrize("sample", ["ses-complaint-arf", "yahoo-complaint-arf"])
def test_a_complaint_suppresses_and_unsubscribes(
    sample: str, returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock
) -> None:
    result = run_poll(returned(sample, "dee@example.org"), sessions, verp_settings, clock.now())
    assert result.actions == {Action.COMPLAINED: 1}, result.applied
    assert status_of(sessions, "dee@example.org") == SubscriberStatus.COMPLAINED
    assert open_rows(sessions, "dee@example.org") == 0
    with sessions() as session:
        statuses = session.scalars(
            select(Enrollment.status).join(Subscriber, Subscriber.id == Enrollment.subscriber_id).where(Subscriber.email == "dee@example.org")
        ).all()
    assert statuses == [EnrollmentStatus.UNSUBSCRIBED]
    assert timeline_of(sessions, "dee@example.org")[-1] == "complained"  # on the subscriber's timeline
    # A hard bounce after the complaint keeps the stronger record.
    run_poll(returned("postfix-user-unknown", "dee@example.org"), sessions, verp_settings, clock.now())
    assert status_of(sessions, "dee@example.org") == SubscriberStatus.COMPLAINED


@pytest.mark.parametrize("sample", ["exchange-out-of-office", "gmail-vacation", "postfix-delayed", "arf-not-spam", "reader-reply"])
def test_auto_replies_delays_and_replies_change_nothing(
    sample: str, returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock
) -> None:
    result = run_poll(returned(sample, "ann@example.org"), sessions, verp_settings, clock.now())
    assert result.actions == {Action.IGNORED: 1}, result.applied
    assert status_of(sessions, "ann@example.org") == SubscriberStatus.ACTIVE
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(BounceReport)) == 0


def test_a_rewritten_return_path_is_matched_by_message_id_and_recipient_only(
    returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock, sent: dict[str, tuple[str, str]]
) -> None:
    # The relay put its own address in the return path: the Message-ID and Final-Recipient decide.
    folder = returned("gmail-no-such-user", "ann@example.org", verp="bounces@relay.example.net")
    assert run_poll(folder, sessions, verp_settings, clock.now()).actions == {Action.SUPPRESSED: 1}
    assert status_of(sessions, "ann@example.org") == SubscriberStatus.BOUNCED
    # ben's Message-ID with another recipient named: not ben's bounce, nobody's.
    _, bens_message_id = sent["ben@example.org"]
    other = (CORPUS / "gmail-no-such-user.eml").read_text(encoding="utf-8")
    other = other.replace("{{VERP}}", "bounces@relay.example.net").replace("{{RCPT}}", "someone@example.net").replace("{{MESSAGE_ID}}", bens_message_id)
    (folder / "999-other.eml").write_text(other, encoding="utf-8")
    result = run_poll(folder, sessions, verp_settings, clock.now())
    assert result.actions == {Action.ALREADY_RECORDED: 1, Action.UNMATCHED: 1}
    assert status_of(sessions, "ben@example.org") == SubscriberStatus.ACTIVE


def test_a_forged_verp_address_matches_nothing(
    returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock, sent: dict[str, tuple[str, str]]
) -> None:
    envelope_from, _ = sent["ben@example.org"]
    delivery_id = int(envelope_from.split("+", 1)[1].split("-", 1)[0])
    forged = envelope_from.replace(f"+{delivery_id}-", f"+{delivery_id + 1}-")
    folder = returned("ses-bounce", "ben@example.org", verp=forged)
    # Without a VERP match the forged report still names ben's Message-ID and address, so strip those.
    for path in folder.glob("*.eml"):
        path.write_bytes(path.read_bytes().replace(sent["ben@example.org"][1].encode(), b"<unknown@example.org>"))
    assert run_poll(folder, sessions, verp_settings, clock.now()).actions == {Action.UNMATCHED: 1}
    assert {status_of(sessions, address) for address in PEOPLE} == {SubscriberStatus.ACTIVE}


def test_course_bounces_poll_reads_a_folder(tmp_path: Path) -> None:
    """The command as a user runs it: bad input is one error line; an empty folder reads nothing."""
    missing = subprocess.run([COURSE, "bounces", "poll", "--folder", str(tmp_path / "nope")], env=environment(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and missing.stderr.strip().startswith("error:") and "nope" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "reply.eml").write_bytes(b"From: a@example.com\r\nSubject: hi\r\n\r\nthanks\r\n")
    done = subprocess.run([COURSE, "bounces", "poll", "--folder", str(tmp_path / "empty"), "--json"], env=environment(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"read": 1, "actions": {"ignored": 1}, "errors": []}'


def test_an_address_that_complained_gets_no_confirmation_mail_when_signed_up_again(
    returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock
) -> None:
    """Anyone can type an address into the form: one that marked our mail as spam is suppressed
    like one that bounced, not mailed a confirmation."""
    run_poll(returned("ses-complaint-arf", "dee@example.org"), sessions, verp_settings, clock.now())
    limit = RateLimit("signup-address", 100, timedelta(hours=1))
    with sessions.begin() as session:
        course = session.scalars(select(Course)).one()
        outcome, row = sign_up(
            session, course, SignupDetails("dee@example.org", "", "UTC"), now=clock.now(), address_limit=limit, address_key="k"
        )
    assert (outcome, row) == (SignupOutcome.SUPPRESSED, None)
    assert status_of(sessions, "dee@example.org") == SubscriberStatus.COMPLAINED
