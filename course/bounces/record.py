"""The one recording function: a parsed report (course/bounces/parse.py) applied to its subscriber.

1. Find the delivery the report is about: by the VERP address it was sent to (signed, so exact), or,
   when a relay rewrote the return path, by the returned Message-ID together with the recipient the
   report names (Final-Recipient / Original-Rcpt-To), which must be that delivery's address. A
   report from a provider's verified webhook that names neither (Postmark's names only the
   address) is matched by its address: that subscriber's latest sent delivery. Nothing else: mail
   that matches neither changes nothing (anyone can mail a bounce address).
2. A test send or an admin invitation says nothing about a subscriber: ignored.
3. Store the report once (`bounce_reports.report_key` is unique): one read again changes nothing.
4. Mail to a reader's List-Unsubscribe address (unsubscribe+<signed>@<bounce domain>, whatever
   the mail says) unsubscribes them from that course, or from everything, as the one-click link
   does (a subscriber event with reason "mailto"); stored once like a report, so read again it
   changes nothing.
5. Hard bounce: the address is suppressed at once (course.ledger.suppress: status bounced, every
   open row cancelled). Soft bounce: suppressed once it has `soft_threshold` within `soft_window`.
   Complaint: suppressed, unsubscribed from everything, status complained.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from course.audience.enrollment import unsubscribe
from course.audience.events import record_event
from course.bounces.parse import Recipient, Report, Verdict
from course.delivery.envelope import delivery_of_verp, unsubscription_of
from course.ledger import MessageIds, message_ids_from_secret, suppress
from course.models import BounceKind, BounceReport, Delivery, DeliveryKind, Subscriber, SubscriberEventKind, SubscriberStatus
from course.settings import Settings

# The worst verdict first: the one a report with several recipients is applied with.
_SEVERITY = (Verdict.HARD, Verdict.COMPLAINT, Verdict.SOFT)
_KIND = {Verdict.HARD: BounceKind.HARD, Verdict.SOFT: BounceKind.SOFT, Verdict.COMPLAINT: BounceKind.COMPLAINT}


@dataclass(frozen=True)
class BounceOptions:
    """Everything the bounce side reads from the settings, in one place."""

    secret: str
    bounce_domain: str
    soft_threshold: int
    soft_window: timedelta
    message_ids: MessageIds

    @classmethod
    def from_settings(cls, settings: Settings) -> BounceOptions:
        return cls(
            secret=settings.secret_key,
            bounce_domain=settings.bounce_domain,
            soft_threshold=settings.bounce_soft_threshold,
            soft_window=timedelta(days=settings.bounce_soft_window_days),
            message_ids=message_ids_from_secret(settings.list_id_domain, settings.secret_key),
        )


class Action(StrEnum):
    SUPPRESSED = "suppressed"  # a hard bounce, or the soft bounce that reached the threshold
    COUNTED = "counted"  # a soft bounce under the threshold
    COMPLAINED = "complained"  # suppressed and unsubscribed
    UNSUBSCRIBED = "unsubscribed"  # mail to a reader's List-Unsubscribe address
    ALREADY_RECORDED = "already-recorded"
    IGNORED = "ignored"  # an auto-reply, a delay warning, a not-spam report, a reader's reply
    TEST_SEND = "test-send"  # about a test send or an admin invitation: no subscriber to act on
    UNMATCHED = "unmatched"  # a bounce that names no delivery of ours


@dataclass(frozen=True)
class Applied:
    report_id: str
    verdict: Verdict
    action: Action
    subscriber_id: int | None = None
    delivery_id: int | None = None
    detail: str = ""


def _worst(report: Report) -> Recipient | None:
    for verdict in _SEVERITY:
        for recipient in report.recipients:
            if recipient.verdict == verdict:
                return recipient
    return None


def _delivery_of(session: Session, report: Report, recipient: Recipient, options: BounceOptions) -> Delivery | None:
    """Step 1 of the module's rules."""
    if options.bounce_domain:
        for address in report.addressed_to:
            delivery_id = delivery_of_verp(address, secret=options.secret, domain=options.bounce_domain)
            if delivery_id is not None:
                found = session.get(Delivery, delivery_id)
                if found is not None:
                    return found
    if report.original_message_id and recipient.address:
        # Our Message-IDs carry the delivery id, encrypted: decrypted, not searched for. Mail sent
        # before they did (<delivery.N@…>) is still found by the stored column.
        delivery_id = options.message_ids.delivery_of(report.original_message_id)
        found = (
            session.get(Delivery, delivery_id)
            if delivery_id is not None
            else session.scalars(select(Delivery).where(Delivery.message_id == report.original_message_id)).first()
        )
        if found is not None and found.message_id == report.original_message_id:
            address = found.test_address or (
                session.scalar(select(Subscriber.email).where(Subscriber.id == found.subscriber_id)) if found.subscriber_id else None
            )
            if address is not None and address.lower() == recipient.address.lower():
                return found
    if report.verified_sender and recipient.address:
        # The subscriber by its email (uq_subscribers_email_lower), then its lesson and campaign
        # rows (the two partial (subscriber_id, …) indexes serve each arm of the OR).
        return session.scalars(
            select(Delivery)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                func.lower(Subscriber.email) == recipient.address.lower(),
                or_(Delivery.lesson_id.is_not(None), Delivery.campaign_id.is_not(None)),
                Delivery.sent_at.is_not(None),
            )
            .order_by(Delivery.sent_at.desc(), Delivery.id.desc())
            .limit(1)
        ).first()
    return None


def record_report(session: Session, report: Report, *, options: BounceOptions, source: str, now: datetime) -> Applied:
    """Apply one report (the module's steps), in the caller's transaction."""
    if options.bounce_domain and report.verdict in (Verdict.NOT_A_REPORT, Verdict.AUTO_REPLY) and not report.verified_sender:
        for address in report.addressed_to:
            unsubscription = unsubscription_of(address, secret=options.secret, domain=options.bounce_domain)
            if unsubscription is not None:
                return _unsubscribe_by_mail(session, report, *unsubscription, source=source, now=now)
    recipient = _worst(report)
    if recipient is None:
        return Applied(report.report_id, report.verdict, Action.IGNORED, detail=report.detail)
    delivery = _delivery_of(session, report, recipient, options)
    if delivery is None:
        return Applied(report.report_id, recipient.verdict, Action.UNMATCHED, detail=report.detail)
    if delivery.kind in (DeliveryKind.CAMPAIGN_TEST, DeliveryKind.ADMIN_INVITATION) or delivery.subscriber_id is None:
        return Applied(report.report_id, recipient.verdict, Action.TEST_SEND, delivery_id=delivery.id, detail=report.detail)
    subscriber_id = delivery.subscriber_id
    stored = BounceReport(
        report_key=report.report_id[:200],
        subscriber_id=subscriber_id,
        delivery_id=delivery.id,
        kind=_KIND[recipient.verdict],
        status=recipient.status[:32],
        reason=recipient.reason[:1000],
        source=source[:32],
        received_at=now,
        campaign_id=delivery.campaign_id,
        lesson_id=delivery.lesson_id,
    )
    try:
        with session.begin_nested():
            session.add(stored)
    except IntegrityError:
        return Applied(report.report_id, recipient.verdict, Action.ALREADY_RECORDED, subscriber_id, delivery.id, report.detail)
    applied = _apply(session, recipient.verdict, subscriber_id, options=options, now=now)
    return Applied(report.report_id, recipient.verdict, applied, subscriber_id, delivery.id, report.detail)


def _unsubscribe_by_mail(session: Session, report: Report, subscriber_id: int, course_id: int | None, *, source: str, now: datetime) -> Applied:
    """Step 4."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:  # erased since: nothing to do
        return Applied(report.report_id, report.verdict, Action.UNMATCHED, detail="unsubscribe mail for a subscriber no longer here")
    stored = BounceReport(
        report_key=report.report_id[:200], subscriber_id=subscriber_id, delivery_id=None, kind=BounceKind.UNSUBSCRIBE,
        status="", reason=f"List-Unsubscribe mailto ({'course ' + str(course_id) if course_id else 'everything'})",
        source=source[:32], received_at=now,
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(stored)
    except IntegrityError:
        return Applied(report.report_id, report.verdict, Action.ALREADY_RECORDED, subscriber_id, detail=report.detail)
    if course_id is None and subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED):
        # Stopped already, and a bounced or complained status is the stronger record: kept.
        return Applied(report.report_id, report.verdict, Action.IGNORED, subscriber_id, detail="unsubscribe mail for a reader already stopped")
    unsubscribe(session, subscriber, course_id=course_id, now=now, reason="mailto")
    return Applied(report.report_id, report.verdict, Action.UNSUBSCRIBED, subscriber_id, detail="List-Unsubscribe mailto")


def _apply(session: Session, verdict: Verdict, subscriber_id: int, *, options: BounceOptions, now: datetime) -> Action:
    status = session.scalar(select(Subscriber.status).where(Subscriber.id == subscriber_id))
    if verdict == Verdict.COMPLAINT:
        suppress(session, [subscriber_id], now=now)
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None  # the delivery's foreign key
        unsubscribe(session, subscriber, course_id=None, now=now, reason="complaint")
        session.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(status=SubscriberStatus.COMPLAINED))
        record_event(session, subscriber_id, SubscriberEventKind.COMPLAINED, now=now, detail={"reason": "spam complaint (ARF)"})
        return Action.COMPLAINED
    if verdict == Verdict.SOFT:
        recent = session.scalar(
            select(func.count())
            .select_from(BounceReport)
            .where(
                BounceReport.subscriber_id == subscriber_id,
                BounceReport.kind == BounceKind.SOFT,
                BounceReport.received_at > now - options.soft_window,
            )
        )
        if (recent or 0) < options.soft_threshold:
            record_event(
                session, subscriber_id, SubscriberEventKind.SOFT_BOUNCED, now=now,
                detail={"counted": (recent or 0), "threshold": options.soft_threshold},
            )  # fmt: skip
            return Action.COUNTED
    if status == SubscriberStatus.COMPLAINED:
        return Action.SUPPRESSED  # already suppressed; a complaint is the stronger record, kept
    suppress(session, [subscriber_id], now=now)
    return Action.SUPPRESSED
