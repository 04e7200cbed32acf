"""Bounces and complaints counted where the admin looks, on PostgreSQL and SQLite: per campaign in
its progress, per lesson in the course funnel; each also on the subscriber's timeline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from course.audience.course_stats import course_funnel
from course.bounces.parse import Recipient, Report, Verdict
from course.bounces.record import Action, BounceOptions, record_report
from course.campaigns.progress import ReportCounts, campaign_summary
from course.campaigns.service import fan_out, schedule_campaign, tag_subscribers
from course.clock import ManualClock
from course.models import Course, Delivery, DeliveryState, Subscriber
from course.settings import Settings
from tests.bounces.test_record import Returned, returned, run_poll, sent, timeline_of, verp_settings  # noqa: F401  (fixtures)

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc)


def test_reports_are_counted_per_campaign(sessions: sessionmaker[Session], settings: Settings) -> None:
    options = BounceOptions.from_settings(settings)
    readers = ["hard@example.org", "soft@example.org", "spam@example.org", "fine@example.org"]
    with sessions.begin() as session:
        for email in readers:
            session.add(Subscriber(email=email, name="", timezone="UTC", status="active", created_at=NOW - timedelta(days=30)))
        session.flush()
        for email in readers:
            tag_subscribers(session, email, ["readers"])
        campaign = schedule_campaign(
            session, name="March", subject="News", body_markdown="Hello", segment_tag="readers",
            sender_name="Bakery", sender_email="news@example.org", send_at=NOW, now=NOW,
        )  # fmt: skip
        fan_out(session, campaign.id, now=NOW)
        campaign_id = campaign.id
        rows = dict(session.execute(select(Subscriber.email, Delivery.id).join(Delivery, Delivery.subscriber_id == Subscriber.id)).all())
        for delivery_id in rows.values():  # as the sender records them (course.ledger.record)
            session.execute(
                update(Delivery).where(Delivery.id == delivery_id)
                .values(state=DeliveryState.SENT, sent_at=NOW, message_id=options.message_ids.for_delivery(delivery_id))
            )  # fmt: skip
    with sessions.begin() as session:
        for number, (email, verdict) in enumerate((("hard@example.org", Verdict.HARD), ("soft@example.org", Verdict.SOFT), ("spam@example.org", Verdict.COMPLAINT))):
            report = Report(
                report_id=f"<r{number}@mx.example.net>", verdict=verdict, recipients=(Recipient(email, verdict, "5.1.1", "x"),),
                original_message_id=options.message_ids.for_delivery(rows[email]),
            )  # fmt: skip
            assert record_report(session, report, options=options, source="folder", now=NOW).action != Action.UNMATCHED
    with sessions() as session:
        summary = campaign_summary(session, campaign_id, now=NOW)
    assert summary is not None and summary.reports == ReportCounts(hard=1, soft=1, complaints=1)
    assert timeline_of(sessions, "spam@example.org")[-1] == "complained"
    assert timeline_of(sessions, "soft@example.org")[-1] == "soft_bounced"


def test_reports_are_counted_per_lesson_in_the_funnel(returned: Returned, sessions: sessionmaker[Session], verp_settings: Settings, clock: ManualClock) -> None:
    run_poll(returned("postfix-user-unknown", "ann@example.org"), sessions, verp_settings, clock.now())
    run_poll(returned("yahoo-complaint-arf", "ben@example.org"), sessions, verp_settings, clock.now())
    run_poll(returned("postfix-mailbox-full", "cy@example.org"), sessions, verp_settings, clock.now())
    with sessions() as session:
        course_id = session.scalars(select(Course.id)).one()
        funnel = course_funnel(session, course_id)
    rows = {key: value for key, _, value in funnel.rows()}
    assert (rows["bounce_reports"], rows["bounce_reports_1"], rows["complaints"], rows["complaints_1"]) == (2, 2, 1, 1)
    assert "bounce_reports_2" not in rows  # lesson 2 was not sent: no row for it
    assert rows["bounced"] == 1  # ann's address, suppressed
