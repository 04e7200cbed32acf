"""The campaign editor over a real database (PostgreSQL and SQLite): drafts and their checks (bad
input is refused with a message per field and writes nothing), duplicate, edits refused once
sending, scheduling now / at a zoned moment / at a wall time in each subscriber's zone (one
INSERT … SELECT, DST-correct, zones already past get it at once), pause and resume that reach rows
already leased to a worker, and cancel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.campaigns.audience import build_audience
from course.campaigns.service import (
    MAX_BODY_CHARS,
    check_draft,
    create_draft,
    duplicate,
    parse_senders,
    pause,
    resume,
    schedule,
    update_draft,
    cancel,
)
from course.campaigns.refusals import AudienceEmpty, InputRefused, StateRefused
from course.campaigns.service import fan_out, refresh_campaign_status, tag_subscribers
from course.campaigns.timing import Schedule, ScheduleError, parse_schedule
from course.ledger import claim_due, take_over
from course.models import Campaign, CampaignStatus, Delivery, DeliveryState, Subscriber

# Thursday 5 March 2026, 12:00 UTC: 13:00 in Berlin, 01:00 on Friday in Auckland, 04:00 in Los Angeles.
NOW = datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc)
SENDERS = parse_senders("The Bakery <news@example.org>, Ann Editor <ann@example.org>\nbroken entry")


def draft(**changes: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = dict(
        name="March news", subject="What is rising", preheader="Rye, spelt and you", sender="news@example.org",
        body_markdown="# Hello\n\nBread **news**.", audience=build_audience(tags_any="readers"), senders=SENDERS,
    )  # fmt: skip
    fields.update(changes)
    return check_draft(**fields)  # type: ignore[arg-type]


def _readers(session: Session, zones: dict[str, int]) -> None:
    number = 0
    for zone, count in zones.items():
        for _ in range(count):
            session.add(Subscriber(email=f"r{number}@example.org", name=f"R{number}", timezone=zone, status="active", created_at=NOW))
            number += 1
    session.flush()
    for n in range(number):
        tag_subscribers(session, f"r{n}@example.org", ["readers"])


def test_senders_come_from_the_configured_list() -> None:
    assert [s.label for s in SENDERS] == ["The Bakery <news@example.org>", "Ann Editor <ann@example.org>"]
    assert draft(sender="Ann Editor <ann@example.org>").sender.email == "ann@example.org"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"subject": "  "}, "subject", "The subject is empty."),
        ({"subject": "Hello\r\nBcc: everyone@example.org"}, "subject", "must be one line"),
        ({"name": "a\nb"}, "name", "must be one line"),
        ({"preheader": "x" * 201}, "preheader", "longer than 200"),
        ({"sender": "evil@example.org"}, "sender", "Choose a sender"),
        ({"body_markdown": "Hi <script>alert(1)</script>"}, "body_markdown", "HTML that email cannot carry"),
        ({"body_markdown": 'Hi <img src=x onerror="alert(1)">'}, "body_markdown", "event handlers"),
        ({"body_markdown": "[click](javascript:alert(1))"}, "body_markdown", "javascript"),
        ({"body_markdown": "x" * (2 * 1024 * 1024)}, "body_markdown", f"the most a campaign can have is {MAX_BODY_CHARS:,}"),
        ({"body_markdown": "\n\n"}, "body_markdown", "The body is empty."),
        ({"body_markdown": "News.\n\n```\nfeed 1:1:1"}, "body_markdown", "Line 3 of the body: code fence '```' is never closed."),
        ({"body_markdown": "News.\n\n## \n\nMore."}, "body_markdown", "Line 3 of the body: empty heading"),
    ],
)
def test_bad_drafts_are_refused_field_by_field(changes: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(InputRefused) as refused:
        draft(**changes)
    assert message in refused.value.fields[field]


def test_drafts_are_created_edited_duplicated_and_frozen_once_sending(db: sessionmaker[Session]) -> None:
    with db.begin() as session:
        _readers(session, {"UTC": 3})
        campaign = create_draft(session, draft(), author=None, now=NOW)
        campaign_id = campaign.id
        assert campaign.status == CampaignStatus.DRAFT and campaign.audience["tags_any"] == ["readers"]
    with db.begin() as session:
        with pytest.raises(InputRefused, match="no subscriber has the tag 'nosuch'"):
            update_draft(session, campaign_id, draft(audience=build_audience(tags_any="nosuch")), now=NOW)
    with db.begin() as session:
        update_draft(session, campaign_id, draft(subject="What rose"), now=NOW)
        copy_id = duplicate(session, campaign_id, author=None, now=NOW).id
    with db.begin() as session:
        assert session.get(Campaign, campaign_id).subject == "What rose"  # type: ignore[union-attr]
        copy = session.get(Campaign, copy_id)
        assert copy is not None and copy.name == "Copy of March news" and copy.status == CampaignStatus.DRAFT
        assert copy.body_markdown == "# Hello\n\nBread **news**." and copy.audience["tags_any"] == ["readers"]
    with db.begin() as session:
        schedule(session, campaign_id, Schedule("now"), now=NOW)
        fan_out(session, campaign_id, now=NOW)
    with db.begin() as session, pytest.raises(StateRefused, match="is sending: only drafts can be edited"):
        update_draft(session, campaign_id, draft(subject="Changed while sending"), now=NOW)
    with db() as session:
        assert session.get(Campaign, campaign_id).subject == "What rose"  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).where(Delivery.campaign_id == campaign_id)) == 3
        assert session.scalar(select(func.count()).where(Delivery.campaign_id == copy_id)) == 0


def test_schedules_in_the_past_or_to_nobody_are_refused(db: sessionmaker[Session]) -> None:
    with pytest.raises(ScheduleError, match="not a date"):
        parse_schedule("at", "5 March", "09:00", "Europe/Berlin")
    with pytest.raises(ScheduleError, match="unknown time zone"):
        parse_schedule("at", "2026-03-05", "09:00", "Mars/Olympus")
    with db.begin() as session:
        _readers(session, {"Europe/Berlin": 2})
        campaign_id = create_draft(session, draft(), author=None, now=NOW).id
    with db.begin() as session, pytest.raises(InputRefused, match="has passed"):
        schedule(session, campaign_id, parse_schedule("at", "2026-03-05", "12:00", "Europe/Berlin"), now=NOW)  # 11:00 UTC
    with db.begin() as session, pytest.raises(InputRefused, match="passed in every subscriber's time zone"):
        schedule(session, campaign_id, parse_schedule("local", "2026-03-04", "09:00"), now=NOW)
    with db.begin() as session:
        session.execute(Subscriber.__table__.update().values(status="unsubscribed"))
    with db.begin() as session, pytest.raises(AudienceEmpty, match="would reach nobody"):
        schedule(session, campaign_id, Schedule("now"), now=NOW)
    with db() as session:
        assert session.get(Campaign, campaign_id).status == CampaignStatus.DRAFT  # type: ignore[union-attr]


def test_a_zoned_moment_is_sent_at_that_moment(db: sessionmaker[Session]) -> None:
    with db.begin() as session:
        _readers(session, {"Europe/Berlin": 2, "UTC": 1})
        campaign_id = create_draft(session, draft(), author=None, now=NOW).id
        result = schedule(session, campaign_id, parse_schedule("at", "2026-03-06", "08:30", "America/New_York"), now=NOW)
        assert result.send_at == datetime(2026, 3, 6, 13, 30, tzinfo=timezone.utc) and result.recipients == 3 and result.at_once == 0
    with db.begin() as session:
        assert fan_out(session, campaign_id, now=result.send_at) == 3
        assert set(session.scalars(select(Delivery.due_at).where(Delivery.campaign_id == campaign_id))) == {result.send_at}


def test_a_local_time_reaches_each_zone_at_its_own_moment_in_one_statement(db: sessionmaker[Session]) -> None:
    """09:00 on Sunday 8 March 2026: Auckland's is already past at scheduling time (sent at once);
    Berlin's is 08:00 UTC; Los Angeles's is 17:00 UTC, the day the US clocks go forward (PDT)."""
    with db.begin() as session:
        _readers(session, {"Pacific/Auckland": 2, "Europe/Berlin": 3, "America/Los_Angeles": 1})
        campaign_id = create_draft(session, draft(), author=None, now=NOW).id
    scheduled_at = datetime(2026, 3, 7, 22, 0, tzinfo=timezone.utc)  # Sunday 11:00 in Auckland
    with db.begin() as session:
        result = schedule(session, campaign_id, parse_schedule("local", "2026-03-08", "09:00"), now=scheduled_at)
    assert result.recipients == 6 and result.at_once == 2
    assert result.send_at == scheduled_at  # Auckland's moment has passed: the fan-out starts now
    with db.begin() as session:
        assert fan_out(session, campaign_id, now=scheduled_at) == 6
        due = {
            zone: moment
            for zone, moment in session.execute(
                select(Subscriber.timezone, Delivery.due_at).join(Delivery, Delivery.subscriber_id == Subscriber.id).where(Delivery.campaign_id == campaign_id)
            )
        }
    assert due["Pacific/Auckland"] == scheduled_at
    assert due["Europe/Berlin"] == datetime(2026, 3, 8, 8, 0, tzinfo=timezone.utc)
    assert due["America/Los_Angeles"].astimezone(ZoneInfo("America/Los_Angeles")).strftime("%H:%M %Z") == "09:00 PDT"


def test_pause_holds_rows_already_leased_to_a_worker_and_resume_releases_each_once(db: sessionmaker[Session]) -> None:
    with db.begin() as session:
        _readers(session, {"UTC": 6})
        campaign_id = create_draft(session, draft(), author=None, now=NOW).id
        schedule(session, campaign_id, Schedule("now"), now=NOW)
        fan_out(session, campaign_id, now=NOW)
    with db.begin() as session:  # a dispatcher leases four rows to a send task that has not run yet
        claim = claim_due(session, now=NOW, limit=4, lease=timedelta(minutes=5))
        assert claim is not None
        leased = [*claim.urgent_ids, *claim.bulk_ids]
    with db.begin() as session:
        assert pause(session, campaign_id, now=NOW) == 6
        assert session.get(Campaign, campaign_id).status == CampaignStatus.PAUSED  # type: ignore[union-attr]
    with db.begin() as session:  # the send task runs now: it takes over nothing
        assert take_over(session, leased, token=claim.token, now=NOW, lease=timedelta(minutes=5)).jobs == []
        assert claim_due(session, now=NOW + timedelta(hours=1), limit=100, lease=timedelta(minutes=5)) is None
        assert refresh_campaign_status(session, campaign_id) == CampaignStatus.PAUSED  # held rows keep it open
    with db.begin() as session, pytest.raises(StateRefused, match="cannot be paused"):
        pause(session, campaign_id, now=NOW)
    with db.begin() as session:
        assert resume(session, campaign_id, now=NOW) == 6
        assert session.get(Campaign, campaign_id).status == CampaignStatus.SENDING  # type: ignore[union-attr]
    with db.begin() as session:
        again = claim_due(session, now=NOW, limit=100, lease=timedelta(minutes=5))
        assert again is not None and sorted([*again.urgent_ids, *again.bulk_ids]) == sorted(
            session.scalars(select(Delivery.id).where(Delivery.campaign_id == campaign_id))
        )
    with db.begin() as session:
        assert cancel(session, campaign_id) == 6
        assert set(session.scalars(select(Delivery.state).where(Delivery.campaign_id == campaign_id))) == {DeliveryState.CANCELLED}
    with db.begin() as session, pytest.raises(StateRefused, match="already cancelled"):
        cancel(session, campaign_id)


def test_the_confirmation_says_what_scheduling_will_do() -> None:
    from datetime import date, time

    from course.campaigns.service import Scheduled, describe_schedule

    later = Scheduled(send_at=NOW + timedelta(hours=3, minutes=12), recipients=26_412, at_once=0)
    assert describe_schedule(later, Schedule("local", date(2026, 3, 5), time(9)), now=NOW) == (
        "Send to 26,412 readers at 09:00 in each reader's own time zone on Thu 5 Mar 2026, starting in 3 h 12 min."
    )
    part = Scheduled(send_at=NOW, recipients=10, at_once=4)
    assert describe_schedule(part, Schedule("local", date(2026, 3, 5), time(9)), now=NOW) == (
        "Send to 10 readers at 09:00 in each reader's own time zone on Thu 5 Mar 2026: 4 readers at once "
        "(that time has passed in their zone), the other 6 as their zone reaches it."
    )
    zoned = Scheduled(send_at=NOW + timedelta(days=2), recipients=1, at_once=0)
    assert describe_schedule(zoned, Schedule("at", date(2026, 3, 7), time(13), "Europe/Berlin"), now=NOW) == (
        "Send to 1 reader at 13:00 Europe/Berlin on Sat 7 Mar 2026, starting in 2 d."
    )
    assert describe_schedule(Scheduled(NOW, 5, 5), Schedule("now"), now=NOW) == "Send to 5 readers now."


def test_the_lifecycle_is_one_table() -> None:
    """Every move and the states it leaves from, in one place; the refusals quote it."""
    from course.campaigns.service import TRANSITIONS
    from course.models import CampaignStatus as S

    assert set(TRANSITIONS) == {
        "edit", "delete", "schedule", "unschedule", "fan_out", "pause", "resume", "resume_before_fan_out", "cancel", "finish",
    }  # fmt: skip
    assert TRANSITIONS["cancel"].allowed == {S.DRAFT, S.SCHEDULED, S.SENDING, S.PAUSED}
    assert TRANSITIONS["pause"].allowed == {S.SCHEDULED, S.SENDING} and TRANSITIONS["pause"].to == S.PAUSED
    assert TRANSITIONS["finish"].to == S.DONE and TRANSITIONS["delete"].to is None
    reached = {move.to for move in TRANSITIONS.values()} - {None}
    assert reached == set(S), "every status is reached by some move"
