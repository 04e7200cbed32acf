"""Webhook events in the database: stored by the request (store_events: one statement, a replayed
event stores nothing), applied by a beat task (apply_pending) through the one recording function.

apply_pending, for each pending event, oldest first:
1. Claim it: UPDATE … SET applied_at WHERE applied_at IS NULL; no row updated means another worker
   got there first.
2. A bounce or complaint becomes a Report (course/bounces/parse.py's shape) recorded by
   record_report, keyed "<provider>:<event id>", in the claim's transaction. An SNS subscription
   is confirmed by visiting its SubscribeURL.
3. An event that fails is marked applied with the error as its outcome, in a transaction of its
   own: one bad event must not be retried forever by every worker (healthchecks' habit)."""

from __future__ import annotations

import logging
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from course.bounces.parse import Recipient, Report, Verdict
from course.bounces.record import BounceOptions, record_report
from course.bounces.webhooks.events import EventKind, Provider, ProviderEvent
from course.bounces.webhooks.ses import is_aws_sns_url
from course.models import WebhookEvent

log = logging.getLogger(__name__)

_VERDICT = {EventKind.HARD: Verdict.HARD, EventKind.SOFT: Verdict.SOFT, EventKind.COMPLAINT: Verdict.COMPLAINT}


def store_events(session: Session, provider: Provider, events: Sequence[ProviderEvent], *, now: datetime) -> int:
    """Insert the events not stored before; the number that were new."""
    if not events:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    rows = [
        dict(
            provider=provider.value, event_id=event.event_id[:200], kind=event.kind.value, recipient=event.recipient[:320],
            message_id=event.message_id[:300], return_path=event.return_path[:320], status=event.status[:32],
            reason=event.reason[:1000], received_at=now, applied_at=None, outcome="",
        )  # fmt: skip
        for event in {event.event_id: event for event in events}.values()  # one batch may repeat an event
    ]
    statement = insert(WebhookEvent).values(rows).on_conflict_do_nothing(index_elements=["provider", "event_id"])
    return len(session.execute(statement.returning(WebhookEvent.id)).scalars().all())


def report_of(event: WebhookEvent) -> Report:
    """A stored event as the report record_report applies."""
    verdict = _VERDICT[EventKind(event.kind)]
    return Report(
        report_id=f"{event.provider}:{event.event_id}"[:200],
        verdict=verdict,
        recipients=(Recipient(event.recipient, verdict, event.status, event.reason or f"{event.kind} reported by {event.provider}"),),
        addressed_to=(event.return_path,) if event.return_path else (),
        original_message_id=event.message_id,
        original_recipient=event.recipient,
        detail=f"{event.provider} webhook: {event.kind}",
        verified_sender=True,
    )


def confirm_subscription(url: str) -> None:
    """Visit an SNS SubscribeURL (checked again to be AWS's): the default for apply_pending."""
    if not is_aws_sns_url(url, pem=False):
        raise ValueError("SubscribeURL is not on an SNS host of amazonaws.com")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - https to an AWS host only
        response.read(64 * 1024)


def apply_pending(
    sessions: sessionmaker[Session],
    *,
    options: BounceOptions,
    now: Callable[[], datetime],
    confirm: Callable[[str], None] = confirm_subscription,
    limit: int = 500,
) -> Counter[str]:
    """The module's steps, for at most `limit` events; the outcomes counted."""
    outcomes: Counter[str] = Counter()
    with sessions() as session:
        pending = session.scalars(select(WebhookEvent.id).where(WebhookEvent.applied_at.is_(None)).order_by(WebhookEvent.id).limit(limit)).all()
    for event_id in pending:
        try:
            with sessions.begin() as session:
                claimed = session.execute(
                    update(WebhookEvent).where(WebhookEvent.id == event_id, WebhookEvent.applied_at.is_(None)).values(applied_at=now())
                ).rowcount
                if claimed != 1:
                    continue  # another worker got there first
                event = session.get(WebhookEvent, event_id)
                assert event is not None
                if event.kind == EventKind.SUBSCRIBE:
                    confirm(event.reason)
                    outcome = "subscription-confirmed"
                else:
                    outcome = str(record_report(session, report_of(event), options=options, source=f"webhook:{event.provider}", now=now()).action)
                event.outcome = outcome
        except Exception as error:  # noqa: BLE001 - recorded on the event, not retried forever
            log.exception("webhook event %s could not be applied", event_id)
            outcome = f"error: {type(error).__name__}"[:32]
            with sessions.begin() as session:
                session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(applied_at=now(), outcome=outcome))
        outcomes[outcome] += 1
    return outcomes
