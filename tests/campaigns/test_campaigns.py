"""Campaigns: scheduling checks, fan-out into the ledger (PostgreSQL and SQLite), idempotent repeats,
and newsletters sent end to end through the dispatcher and the Sender to a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.campaigns.refusals import InputRefused, StateRefused
from course.campaigns.service import (
    cancel,
    due_campaigns,
    fan_out,
    refresh_campaign_status,
    schedule_campaign,
    tag_subscribers,
)
from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.audience.enrollment import get_or_create_subscriber
from course.delivery.links import LinkPurpose, signer_from_settings
from course.models import Campaign, CampaignStatus, Delivery, DeliveryKind, DeliveryState, Subscriber, SubscriberStatus
from course.delivery.render import Renderer
from course.delivery.sending import Sender
from course.settings import Settings
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from tests.support.smtp_server import RecordingSMTPServer

READERS = ["ann@example.org", "ben@example.org", "cy@example.org", "dee@example.org"]


def add_readers(session: Session, clock: ManualClock) -> dict[str, int]:
    """ann and ben tagged `weekly`; cy tagged but unsubscribed; dee untagged."""
    ids = {}
    for address in READERS:
        subscriber = get_or_create_subscriber(session, address, name=address[:3].title(), now=clock.now())
        ids[address] = subscriber.id
    for address in READERS[:3]:
        tag_subscribers(session, address, ["Weekly"])
    session.get(Subscriber, ids["cy@example.org"]).status = SubscriberStatus.UNSUBSCRIBED
    return ids


def newsletter(session: Session, clock: ManualClock, **overrides: object) -> Campaign:
    values: dict[str, object] = {
        "name": "March letter",
        "subject": "Spring is coming",
        "body_markdown": "Hello **readers**.\n\nThis month: sourdough.",
        "segment_tag": "weekly",
        "sender_name": "The Letter",
        "sender_email": "letter@example.org",
        "send_at": clock.now(),
        "now": clock.now(),
    }
    values.update(overrides)
    return schedule_campaign(session, **values)  # type: ignore[arg-type]


def campaign_rows(sessions: sessionmaker[Session], campaign_id: int) -> list[tuple[str, str, str]]:
    with sessions() as session:
        return list(
            session.execute(
                select(Subscriber.email, Delivery.kind, Delivery.state)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.campaign_id == campaign_id)
                .order_by(Subscriber.email)
            ).all()
        )


def test_fan_out_writes_one_row_per_active_tagged_subscriber(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    with sessions.begin() as session:
        add_readers(session, clock)
        campaign = newsletter(session, clock, send_at=clock.now() + timedelta(hours=1))
        assert campaign.status == CampaignStatus.SCHEDULED
        assert due_campaigns(session, now=clock.now()) == []
        assert due_campaigns(session, now=clock.now() + timedelta(hours=1)) == [campaign.id]
        written = fan_out(session, campaign.id, now=clock.now())
    assert written == 2
    assert campaign_rows(sessions, campaign.id) == [
        ("ann@example.org", DeliveryKind.CAMPAIGN, DeliveryState.PENDING),
        ("ben@example.org", DeliveryKind.CAMPAIGN, DeliveryState.PENDING),
    ]
    with sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.campaign_id == campaign.id)).first()
        assert row.due_at == clock.now() + timedelta(hours=1)
        assert row.priority == 100
        assert session.get(Campaign, campaign.id).status == CampaignStatus.SENDING


def test_a_repeated_fan_out_writes_nothing_more(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    with sessions.begin() as session:
        add_readers(session, clock)
        campaign_id = newsletter(session, clock).id
    with sessions.begin() as session:
        assert fan_out(session, campaign_id, now=clock.now()) == 2
    with sessions.begin() as session:
        assert fan_out(session, campaign_id, now=clock.now()) == 0  # already sending
    # A crash between the two steps, replayed: the unique key and ON CONFLICT DO NOTHING hold.
    with sessions.begin() as session:
        session.get(Campaign, campaign_id).status = CampaignStatus.SCHEDULED
    with sessions.begin() as session:
        assert fan_out(session, campaign_id, now=clock.now()) == 0
    assert len(campaign_rows(sessions, campaign_id)) == 2


def test_scheduling_rejects_bad_input(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    with sessions.begin() as session:
        add_readers(session, clock)
        with pytest.raises(InputRefused, match="no subscriber has the tag 'nobody'"):
            newsletter(session, clock, segment_tag="nobody")
        with pytest.raises(InputRefused, match="line breaks"):
            newsletter(session, clock, subject="Hello\r\nBcc: everyone@example.org")
        with pytest.raises(InputRefused, match="line breaks"):
            newsletter(session, clock, sender_name="Letter\nX-Evil: 1")
        with pytest.raises(InputRefused, match="sender address"):
            newsletter(session, clock, sender_email="not an address")
        with pytest.raises(InputRefused, match="invalid tag"):
            tag_subscribers(session, "ann@example.org", ["two words"])
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


@pytest.fixture
def sender(settings: Settings, sessions: sessionmaker[Session], clock: ManualClock) -> Iterator[Sender]:
    transport = SMTPTransport(SMTPConfig(settings.smtp_host, settings.smtp_port, timeout=5))
    yield Sender(
        settings,
        sessions=sessions,
        transport=transport,
        renderer=Renderer(settings.templates_dir),
        signer=signer_from_settings(settings),
        clock=clock,
    )
    transport.close()


def dispatch_and_send(sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, sender: Sender) -> None:
    tasks: list[tuple[list[int], str, bool]] = []
    dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token, urgent)))
    for ids, token, _ in tasks:
        sender.send_claimed(ids, token)


def test_a_campaign_is_sent_end_to_end_and_then_done(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, sender: Sender, smtp_server: RecordingSMTPServer
) -> None:
    with sessions.begin() as session:
        ids = add_readers(session, clock)
        campaign_id = newsletter(session, clock).id
    with sessions.begin() as session:
        fan_out(session, campaign_id, now=clock.now())
    dispatch_and_send(sessions, settings, clock, sender)
    received = smtp_server.wait_for(2, timeout=10)
    assert sorted(mail.envelope_to[0] for mail in received) == ["ann@example.org", "ben@example.org"]
    signer = signer_from_settings(settings)
    for mail in received:
        message = mail.message
        assert message["Subject"] == "Spring is coming"
        assert message["From"] == "The Letter <letter@example.org>"
        assert message["List-Id"] == "The Letter <newsletter.course.localhost>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https_url, mailto = [part.strip(" <>") for part in message["List-Unsubscribe"].split(",")]
        assert mailto.startswith("mailto:")
        token = urlparse(https_url).path.removeprefix("/u/")
        assert signer.read(LinkPurpose.UNSUBSCRIBE, token) == [ids[mail.envelope_to[0]], None]
        assert "<strong>readers</strong>" in message.get_body(("html",)).get_content()
    assert {state for _, _, state in campaign_rows(sessions, campaign_id)} == {DeliveryState.SENT}
    with sessions.begin() as session:
        assert refresh_campaign_status(session, campaign_id) == CampaignStatus.DONE


def test_a_cancelled_campaign_sends_nothing(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, sender: Sender, smtp_server: RecordingSMTPServer
) -> None:
    with sessions.begin() as session:
        add_readers(session, clock)
        campaign_id = newsletter(session, clock).id
    with sessions.begin() as session:
        fan_out(session, campaign_id, now=clock.now())
    # Claimed and handed to a task first, cancelled after: the sender's check at send time wins.
    tasks: list[tuple[list[int], str, bool]] = []
    dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token, urgent)))
    with sessions.begin() as session:
        assert cancel(session, campaign_id) == 2  # leased rows are open rows
    for ids, token, _ in tasks:
        report = sender.send_claimed(ids, token)
        assert report.sent == 0
    assert smtp_server.received == []
    assert {state for _, _, state in campaign_rows(sessions, campaign_id)} == {DeliveryState.CANCELLED}
    with sessions.begin() as session:
        assert fan_out(session, campaign_id, now=clock.now()) == 0
        with pytest.raises(StateRefused, match="already cancelled"):
            cancel(session, campaign_id)


def test_a_campaign_cancelled_after_take_over_is_skipped_by_the_sender(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, sender: Sender, smtp_server: RecordingSMTPServer
) -> None:
    with sessions.begin() as session:
        add_readers(session, clock)
        campaign_id = newsletter(session, clock).id
        fan_out(session, campaign_id, now=clock.now())
    tasks: list[tuple[list[int], str, bool]] = []
    dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token, urgent)))
    with sessions.begin() as session:
        # Only the campaign's status changes (rows stay leased), as when the cancel races the claim.
        session.get(Campaign, campaign_id).status = CampaignStatus.CANCELLED
    for ids, token, _ in tasks:
        assert sender.send_claimed(ids, token).skipped == 2
    assert smtp_server.received == []


def test_a_large_fan_out_refreshes_the_planner_statistics(
    pg_database_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a fan-out of ANALYZE_AFTER_ROWS or more, PostgreSQL has analysed the ledger, so the
    dispatcher's claim plans with the new rows counted (stale statistics made it sort every row)."""
    import course.campaigns.service
    from course.db import make_engine

    monkeypatch.setattr(course.campaigns.service, "ANALYZE_AFTER_ROWS", 50)
    engine = make_engine(pg_database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)

    def last_analyzed() -> object:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            return connection.exec_driver_sql(
                "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'deliveries'"
            ).scalar()

    with sessions.begin() as session:
        for n in range(60):
            get_or_create_subscriber(session, f"reader{n}@example.org", now=clock.now())
            tag_subscribers(session, f"reader{n}@example.org", ["weekly"])
        small = newsletter(session, clock, segment_tag="weekly")
    before = last_analyzed()
    with sessions.begin() as session:
        assert fan_out(session, small.id, now=clock.now()) == 60
    after = last_analyzed()
    engine.dispose()
    assert after is not None and after != before


def test_merge_tags_reach_each_reader_with_their_own_values(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, sender: Sender, smtp_server: RecordingSMTPServer
) -> None:
    """A newsletter to a course's readers names each reader, their course and the last lesson they
    were sent: the values the sender reads per batch, through the whole pipeline."""
    from course.audience.enrollment import enroll
    from course.campaigns import service
    from course.campaigns.audience import build_audience
    from course.campaigns.timing import Schedule
    from tests.support.pipeline_fixtures import make_course

    with sessions.begin() as session:
        course = make_course(session, now=clock.now(), lessons=5)
        ann = get_or_create_subscriber(session, "ann@example.org", name="Ann Lee", now=clock.now())
        enroll(session, ann, course, now=clock.now())
    for _ in range(2):
        dispatch_and_send(sessions, settings, clock, sender)
        clock.advance(timedelta(days=1))
    with sessions.begin() as session:
        ben = get_or_create_subscriber(session, "ben@example.org", name="", now=clock.now())
        enroll(session, ben, session.get(type(course), course.id), now=clock.now())
    dispatch_and_send(sessions, settings, clock, sender)
    lessons = smtp_server.wait_for(4, timeout=10)
    sent_to = [mail.envelope_to[0] for mail in lessons]
    assert (sent_to.count("ann@example.org"), sent_to.count("ben@example.org")) == (3, 1)
    smtp_server.clear()
    with sessions.begin() as session:
        draft = service.check_draft(
            name="Check-in", subject='How is it going, {{ first_name | default: "baker" }}?', preheader="",
            sender="letter@example.org",
            body_markdown="You are at lesson {{ lesson_number }} of *{{ course_title }}* ({{ email }}).",
            audience=build_audience(course="bread"), senders=service.parse_senders("The Letter <letter@example.org>"),
        )  # fmt: skip
        campaign_id = service.create_draft(session, draft, author=None, now=clock.now()).id
        service.schedule(session, campaign_id, Schedule(mode="now"), now=clock.now())
    with sessions.begin() as session:
        fan_out(session, campaign_id, now=clock.now())
    dispatch_and_send(sessions, settings, clock, sender)
    received = {mail.envelope_to[0]: mail.message for mail in smtp_server.wait_for(2, timeout=10)}
    assert received["ann@example.org"]["Subject"] == "How is it going, Ann?"
    assert received["ben@example.org"]["Subject"] == "How is it going, baker?"
    ann_text = received["ann@example.org"].get_body(("plain",)).get_content()
    ben_html = received["ben@example.org"].get_body(("html",)).get_content()
    assert "You are at lesson 3 of Course bread (ann@example.org)." in " ".join(ann_text.split())
    assert "lesson 1 of <em>Course bread</em> (ben@example.org)" in ben_html


def test_a_mistyped_merge_tag_is_refused_with_its_line() -> None:
    from course.campaigns import service
    from course.campaigns.audience import build_audience

    with pytest.raises(InputRefused) as refused:
        service.check_draft(
            name="x", subject="{{ course_title }} news", preheader="", sender="letter@example.org",
            body_markdown="Hello,\n\nHi {{ frist_name }}.", audience=build_audience(tags_any="weekly"),
            senders=service.parse_senders("letter@example.org"),
        )  # fmt: skip
    assert refused.value.fields == {
        "subject": "Subject: {{ course_title }} needs an audience of one course's readers (choose a course).",
        "body_markdown": "Body, line 3: {{ frist_name }} names no merge tag (known: first_name, email, course_title, "
        "lesson_number, preferences_url, unsubscribe_url).",
    }


def test_the_cli_schedule_makes_the_same_campaign_as_the_admin(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """`course campaign schedule` goes through check_draft, create_draft and schedule: its campaign
    stores an audience as the admin's does (no tag-only campaign that the admin reads differently),
    and it is refused like the admin's schedule when its audience reaches nobody now."""
    from course.campaigns.refusals import AudienceEmpty
    from course.campaigns.service import audience_of

    with sessions.begin() as session:
        add_readers(session, clock)
        campaign = newsletter(session, clock)
        assert campaign.status == CampaignStatus.SCHEDULED
        assert campaign.segment_tag is None and campaign.audience is not None
        assert audience_of(campaign).tags_any == ("weekly",)
        for address in ("ann@example.org", "ben@example.org"):
            session.scalars(select(Subscriber).where(Subscriber.email == address)).one().status = SubscriberStatus.UNSUBSCRIBED
        session.flush()
        with pytest.raises(AudienceEmpty, match="would reach nobody"):
            newsletter(session, clock, name="April letter")
