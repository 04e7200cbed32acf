"""What the admin shows about campaigns: each campaign's delivery rows counted per state, its
progress (sent, failed, bounced, remaining), the current send rate and an ETA, and the bounces and
complaints reported after sending (course/bounces, counted from bounce_reports by its campaign
index). Read-only queries plus one pure function that turns counts into progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, exists, func, literal, select
from sqlalchemy.orm import Session

from course.models import (
    UNSETTLED_DELIVERY_STATES,
    BounceKind,
    BounceReport,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
)

RATE_WINDOW = timedelta(minutes=1)  # the "current rate" is what was sent in the last minute
UNSUBSCRIBE_WINDOW = timedelta(days=7)  # "unsubscribed after it": within a week of each recipient's own send


@dataclass(frozen=True)
class Progress:
    total: int
    sent: int
    failed: int
    bounced: int
    cancelled: int
    held: int
    remaining: int  # pending, held, leased or sending
    per_minute: int  # sent in the last RATE_WINDOW
    eta_seconds: int | None  # None: nothing left, or nothing moving to extrapolate from

    @property
    def settled(self) -> int:
        return self.total - self.remaining

    @property
    def percent_settled(self) -> int:
        return 0 if self.total == 0 else int(100 * self.settled / self.total)


def progress_from_counts(counts: dict[str, int], *, sent_last_window: int) -> Progress:
    """Pure: counts per delivery state (and what was sent in the last minute) -> progress."""
    remaining = sum(counts.get(state, 0) for state in UNSETTLED_DELIVERY_STATES)
    eta = None
    if remaining and sent_last_window:
        eta = int(remaining / sent_last_window * RATE_WINDOW.total_seconds())
    return Progress(
        total=sum(counts.values()),
        sent=counts.get(DeliveryState.SENT, 0),
        failed=counts.get(DeliveryState.FAILED, 0),
        bounced=counts.get(DeliveryState.BOUNCED, 0),
        cancelled=counts.get(DeliveryState.CANCELLED, 0),
        held=counts.get(DeliveryState.HELD, 0),
        remaining=remaining,
        per_minute=sent_last_window,
        eta_seconds=eta,
    )


def _counts(session: Session, campaign_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    query = (
        select(Delivery.campaign_id, Delivery.state, func.count())
        .where(Delivery.campaign_id.is_not(None))
        .group_by(Delivery.campaign_id, Delivery.state)
    )
    if campaign_ids is not None:
        query = query.where(Delivery.campaign_id.in_(campaign_ids))
    counts: dict[int, dict[str, int]] = {}
    for campaign_id, state, count in session.execute(query):
        counts.setdefault(campaign_id, {})[state] = count
    return counts


def _sent_since(session: Session, campaign_ids: list[int], since: datetime) -> dict[int, int]:
    if not campaign_ids:
        return {}
    rows = session.execute(
        select(Delivery.campaign_id, func.count())
        .where(
            Delivery.campaign_id.in_(campaign_ids),
            Delivery.state == DeliveryState.SENT,
            Delivery.sent_at >= since,
        )
        .group_by(Delivery.campaign_id)
    )
    return {campaign_id: count for campaign_id, count in rows}


@dataclass(frozen=True)
class ReportCounts:
    """Bounces and complaints reported after sending (DSN mail, ARF, provider webhooks)."""

    hard: int = 0
    soft: int = 0
    complaints: int = 0

    @classmethod
    def of_kinds(cls, by_kind: dict[str, int]) -> ReportCounts:
        return cls(by_kind.get(BounceKind.HARD, 0), by_kind.get(BounceKind.SOFT, 0), by_kind.get(BounceKind.COMPLAINT, 0))


def campaign_reports(session: Session, campaign_ids: list[int]) -> dict[int, ReportCounts]:
    """Each campaign's reports by kind: one GROUP BY over ix_bounce_reports_campaign."""
    by_campaign: dict[int, dict[str, int]] = {campaign_id: {} for campaign_id in campaign_ids}
    if campaign_ids:
        for campaign_id, kind, count in session.execute(
            select(BounceReport.campaign_id, BounceReport.kind, func.count())
            .where(BounceReport.campaign_id.in_(campaign_ids))
            .group_by(BounceReport.campaign_id, BounceReport.kind)
        ):
            by_campaign[campaign_id][kind] = count
    return {campaign_id: ReportCounts.of_kinds(kinds) for campaign_id, kinds in by_campaign.items()}


@dataclass(frozen=True)
class CampaignSummary:
    campaign: Campaign
    progress: Progress
    unsubscribed: int | None = None  # recipients who left within UNSUBSCRIBE_WINDOW (detail only)
    reports: ReportCounts = ReportCounts()  # bounces and complaints reported after sending (detail only)


def unsubscribed_after(session: Session, campaign: Campaign) -> int:
    """Recipients it was sent to who unsubscribed from everything (the campaign's unsubscribe link
    leaves every list) within a week of their own send: each row's sent_at, not the fan-out, which
    can be a day or more earlier for a campaign sent at a local time in each subscriber's zone."""
    if campaign.fanned_out_at is None:
        return 0
    return session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(
            Subscriber.status == SubscriberStatus.UNSUBSCRIBED,
            exists().where(
                Delivery.campaign_id == campaign.id,
                Delivery.subscriber_id == Subscriber.id,
                Delivery.state == DeliveryState.SENT,
                Subscriber.unsubscribed_at >= Delivery.sent_at,
                Subscriber.unsubscribed_at < _later(session, Delivery.sent_at, UNSUBSCRIBE_WINDOW),
            ),
        )
    ) or 0


def _later(session: Session, moment: Any, by: timedelta) -> Any:
    """`moment + by` in SQL. SQLite stores UTC datetimes as text ("2026-03-05 12:00:00.000000"):
    strftime gives the same layout to the millisecond, so the text comparison orders them."""
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:%f", moment, f"+{int(by.total_seconds())} seconds")
    return moment + literal(by, type_=Interval())


def campaign_summaries(session: Session, *, now: datetime, status: str | None = None) -> list[CampaignSummary]:
    """Every campaign (or those with one status), newest first, with its progress."""
    query = select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc())
    if status:
        query = query.where(Campaign.status == status)
    campaigns = list(session.scalars(query))
    counts = _counts(session)
    moving = [c.id for c in campaigns if c.status == CampaignStatus.SENDING]
    recent = _sent_since(session, moving, now - RATE_WINDOW)
    return [
        CampaignSummary(c, progress_from_counts(counts.get(c.id, {}), sent_last_window=recent.get(c.id, 0)))
        for c in campaigns
    ]


def campaign_summary(session: Session, campaign_id: int, *, now: datetime) -> CampaignSummary | None:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    counts = _counts(session, [campaign_id]).get(campaign_id, {})
    recent = _sent_since(session, [campaign_id], now - RATE_WINDOW).get(campaign_id, 0)
    return CampaignSummary(
        campaign, progress_from_counts(counts, sent_last_window=recent), unsubscribed=unsubscribed_after(session, campaign),
        reports=campaign_reports(session, [campaign_id])[campaign_id],
    )  # fmt: skip


def status_counts(session: Session) -> dict[str, int]:
    return {status: count for status, count in session.execute(select(Campaign.status, func.count()).group_by(Campaign.status))}
