"""Newsletters: schedule one campaign for a segment of subscribers, fan it out into the delivery
ledger when its time comes, and mark it done when the ledger has nothing open left for it.

A campaign goes draft/scheduled --fan_out--> sending --refresh_campaign_status--> done, or
cancelled at any point before done. This module decides who gets a campaign and when (the segment
SELECT, the campaign's status); course.ledger writes the rows. Fan-out is one INSERT … SELECT, so a
million recipients cost one statement, not a million; the unique (subscriber_id, campaign_id)
constraint plus ON CONFLICT DO NOTHING makes a repeated or concurrent fan-out harmless. From then on
a campaign row is sent exactly like a lesson row: claimed by the dispatcher, taken over and sent by
a worker.
"""

from __future__ import annotations

import re
from datetime import datetime
from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from course.audience.enrollment import SubscriptionError, find_subscriber, normalize_email
from course.ledger import cancel_campaign_rows, fan_out_campaign_rows
from course.models import (
    UNSETTLED_DELIVERY_STATES,
    Campaign,
    CampaignStatus,
    Delivery,
    Subscriber,
    SubscriberStatus,
    SubscriberTag,
)

ANALYZE_AFTER_ROWS = 10_000  # a fan-out this large refreshes the ledger's planner statistics
_TAG = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
_LINE_BREAK = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class CampaignError(ValueError):
    """Bad campaign input or a campaign in the wrong state: the message names the campaign or tag."""


def normalize_tag(raw: str) -> str:
    tag = raw.strip().lower()
    if not _TAG.fullmatch(tag):
        raise CampaignError(f"invalid tag {raw!r}: use 1-64 of a-z, 0-9, '_', '.', ':', '-'")
    return tag


def _one_line(field: str, value: str, *, limit: int) -> str:
    if _LINE_BREAK.search(value):
        raise CampaignError(f"the campaign {field} cannot contain line breaks")
    value = value.strip()
    if not value:
        raise CampaignError(f"the campaign {field} is empty")
    if len(value) > limit:
        raise CampaignError(f"the campaign {field} is longer than {limit} characters")
    return value


def tag_subscribers(session: Session, email: str, tags: list[str]) -> list[str]:
    """Give an existing subscriber some tags (already present ones are kept). Returns the
    subscriber's tags afterwards."""
    try:
        address = normalize_email(email)
    except SubscriptionError as exc:
        raise CampaignError(str(exc)) from exc
    subscriber = find_subscriber(session, address)
    if subscriber is None:
        raise CampaignError(f"no subscriber with the address {address!r}")
    wanted = {normalize_tag(tag) for tag in tags}
    have = set(session.scalars(select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == subscriber.id)))
    session.add_all(SubscriberTag(subscriber_id=subscriber.id, tag=tag) for tag in sorted(wanted - have))
    session.flush()
    return sorted(wanted | have)


def _segment(segment_tag: str | None):  # type: ignore[no-untyped-def]
    """Active subscribers with the tag (every active subscriber when the tag is None)."""
    query = select(Subscriber.id).where(Subscriber.status == SubscriberStatus.ACTIVE)
    if segment_tag is not None:
        query = query.where(
            exists().where(SubscriberTag.subscriber_id == Subscriber.id, SubscriberTag.tag == segment_tag)
        )
    return query


def schedule_campaign(
    session: Session,
    *,
    name: str,
    subject: str,
    body_markdown: str,
    segment_tag: str | None,
    sender_name: str,
    sender_email: str,
    send_at: datetime | None,
    now: datetime,
) -> Campaign:
    """Validate and store a campaign, scheduled for send_at (now when None). Nothing is written
    to the ledger yet: fan_out does that when send_at comes."""
    tag = normalize_tag(segment_tag) if segment_tag is not None else None
    if tag is not None and session.scalar(select(exists().where(SubscriberTag.tag == tag))) is False:
        raise CampaignError(f"no subscriber has the tag {tag!r}: the campaign would reach nobody")
    if not body_markdown.strip():
        raise CampaignError("the campaign body is empty")
    try:
        address = normalize_email(sender_email)
    except SubscriptionError as exc:
        raise CampaignError(f"sender address: {exc}") from exc
    campaign = Campaign(
        name=_one_line("name", name, limit=200),
        subject=_one_line("subject", subject, limit=300),
        body_markdown=body_markdown,
        segment_tag=tag,
        sender_name=_one_line("sender name", sender_name, limit=200),
        sender_email=address,
        status=CampaignStatus.SCHEDULED,
        send_at=send_at or now,
        created_at=now,
    )
    session.add(campaign)
    session.flush()
    return campaign


def fan_out(session: Session, campaign_id: int, *, now: datetime) -> int:
    """Write one pending delivery row per recipient, due at the campaign's send_at. Returns how
    many rows were written.

    1. Move the campaign from scheduled to sending with a conditional UPDATE: of two concurrent
       fan-outs only one gets the row (the other blocks on its lock, then finds it sending).
    2. One INSERT … SELECT over the segment (course.ledger.fan_out_campaign_rows); ON CONFLICT DO
       NOTHING on (subscriber, campaign) makes a repeat after a crash between the two steps harmless.
    A campaign already sending, done or cancelled writes nothing."""
    started = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SCHEDULED)
        .values(status=CampaignStatus.SENDING, fanned_out_at=now)
        .returning(Campaign.segment_tag, Campaign.send_at)
    ).first()
    if started is None:
        if session.get(Campaign, campaign_id) is None:
            raise CampaignError(f"no campaign with id {campaign_id}")
        return 0
    segment_tag, send_at = started
    return fan_out_campaign_rows(
        session,
        campaign_id,
        _segment(segment_tag),
        due_at=send_at or now,
        now=now,
        analyze_after_rows=ANALYZE_AFTER_ROWS,
    )


def due_campaigns(session: Session, *, now: datetime) -> list[int]:
    """Scheduled campaigns whose send time has come, oldest first."""
    return list(
        session.scalars(
            select(Campaign.id)
            .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.send_at <= now)
            .order_by(Campaign.send_at, Campaign.id)
        )
    )


def refresh_campaign_status(session: Session, campaign_id: int) -> str:
    """A sending campaign with no unsettled row left is done. Returns the campaign's status."""
    session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == CampaignStatus.SENDING,
            ~exists().where(Delivery.campaign_id == campaign_id, Delivery.state.in_(UNSETTLED_DELIVERY_STATES)),
        )
        .values(status=CampaignStatus.DONE)
        .execution_options(synchronize_session=False)
    )
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status is None:
        raise CampaignError(f"no campaign with id {campaign_id}")
    return status


def sending_campaigns(session: Session) -> list[int]:
    return list(session.scalars(select(Campaign.id).where(Campaign.status == CampaignStatus.SENDING)))


def cancel_campaign(session: Session, campaign_id: int) -> int:
    """Stop a campaign: its open rows are cancelled; rows already handed to a worker are caught by
    the sender's check at send time. Returns how many rows were cancelled."""
    changed = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_([CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.SENDING]))
        .values(status=CampaignStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        raise CampaignError(
            f"no campaign with id {campaign_id}" if status is None else f"campaign {campaign_id} is already {status}"
        )
    return cancel_campaign_rows(session, campaign_id)


def campaign_counts(session: Session) -> list[tuple[Campaign, dict[str, int]]]:
    """Every campaign, newest first, with its delivery rows counted per state."""
    counts: dict[int, dict[str, int]] = {}
    for campaign_id, state, count in session.execute(
        select(Delivery.campaign_id, Delivery.state, func.count())
        .where(Delivery.campaign_id.is_not(None))
        .group_by(Delivery.campaign_id, Delivery.state)
    ):
        counts.setdefault(campaign_id, {})[state] = count
    campaigns = session.scalars(select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc()))
    return [(campaign, counts.get(campaign.id, {})) for campaign in campaigns]
