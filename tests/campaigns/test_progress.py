"""A campaign's final statistics over real rows (PostgreSQL and SQLite): "unsubscribed within 7 days
of it" counts a recipient who left within a week of their own send (their row's sent_at), not of
the fan-out, which for a local-time campaign can be days earlier."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from course.campaigns.progress import campaign_summary
from course.campaigns.service import fan_out, schedule_campaign, tag_subscribers
from course.models import Delivery, DeliveryState, Subscriber

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc)


def test_unsubscribed_within_a_week_of_each_recipients_own_send(sessions: sessionmaker[Session]) -> None:
    # Each reader: (sent this many days after the fan-out, or None: not sent; unsubscribed this many days after the fan-out)
    readers = {
        "early@example.org": (0, 6.9),  # 6.9 days after their send: counts
        "late-send@example.org": (3, 8),  # 8 days after the fan-out but 5 after their own send: counts
        "later-still@example.org": (2, 8.5),  # the same: 6.5 days after their own send
        "before-send@example.org": (3, 1),  # left before their copy was sent: not because of it
        "week-later@example.org": (0, 7),  # exactly a week after: outside
        "failed@example.org": (None, 1),  # never received it
        "stays@example.org": (0, None),
    }
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
        assert len(rows) == len(readers)
        for email, (sent_after, left_after) in readers.items():
            if sent_after is None:
                session.execute(update(Delivery).where(Delivery.id == rows[email]).values(state=DeliveryState.FAILED))
            else:
                sent_at = NOW + timedelta(days=sent_after, microseconds=250_000)
                session.execute(update(Delivery).where(Delivery.id == rows[email]).values(state=DeliveryState.SENT, sent_at=sent_at))
            if left_after is not None:
                left_at = NOW + timedelta(days=left_after, microseconds=250_000)
                session.execute(update(Subscriber).where(Subscriber.email == email).values(status="unsubscribed", unsubscribed_at=left_at))
    with sessions() as session:
        summary = campaign_summary(session, campaign_id, now=NOW + timedelta(days=10))
    assert summary is not None and summary.progress.sent == 6
    assert summary.unsubscribed == 3  # early@, late-send@ and later-still@
