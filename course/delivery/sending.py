"""The sender: batch control only. It takes over a claimed batch, checks each row is still wanted,
has the composer (course.delivery.compose) build each message, hands it to the provider's transport
(one kept-open connection) and records every outcome, with the provider's name, in a few batched
statements.

Failures are handled where they happen:
- a 4xx reply, a time-out or a dropped connection puts the row back to pending with exponential
  back-off and jitter, until max_attempts, then marks it failed with the reason;
- a 5xx reply marks the row bounced and suppresses the address everywhere;
- a server that cannot be reached at all stops the batch: every row not yet tried waits for its
  back-off, so a dead SMTP server costs one connection attempt per batch, not one per message;
- the batch stops before its lease runs out and releases the rest, so no message is ever sent by
  a task whose rows may already have been reclaimed by another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from course.clock import Clock, wall_duration
from course.delivery.compose import Composer, TemplateCache
from course.delivery.links import Signer
from course.delivery.render import Renderer
from course.delivery.retry import retry_delay
from course.delivery.transports.base import (
    DEFAULT_PROVIDER,
    ConnectionFailed,
    PermanentSendError,
    TransientSendError,
    Transport,
)
from course.ledger import Batch, DeliveryJob, Outcome, record, take_over
from course.models import DeliveryKind, EnrollmentStatus, SubscriberStatus
from course.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SendReport:
    taken: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0  # cancelled or held at send time
    released: int = 0
    errors: list[str] = field(default_factory=list)


class Sender:
    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        transport: Transport,
        renderer: Renderer,
        signer: Signer,
        clock: Clock,
        provider: str = DEFAULT_PROVIDER,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.transport = transport
        self.provider = provider  # recorded with every outcome that went through `transport`
        self.composer = Composer(settings, renderer=renderer, signer=signer, clock=clock)
        self.clock = clock

    def send_claimed(self, delivery_ids: list[int], token: str) -> SendReport:
        now = self.clock.now()
        lease = wall_duration(self.clock, self.settings.lease_seconds)
        with self.sessions.begin() as session:
            batch = take_over(session, delivery_ids, token=token, now=now, lease=lease)
        report = SendReport(taken=len(batch.jobs))
        if not batch.jobs:
            return report
        # Stop a safe margin before the lease ends: past it, another dispatcher may own the rows.
        stop_at = now + lease - min(lease / 5, wall_duration(self.clock, 60))
        outcome = self._send_batch(batch, stop_at)
        with self.sessions.begin() as session:
            record(session, outcome, token=token, now=self.clock.now(), message_id_domain=self.settings.list_id_domain)
        report.sent = len(outcome.sent)
        report.retried = len(outcome.retry)
        report.failed = len(outcome.failed)
        report.bounced = len(outcome.bounced)
        report.skipped = len(outcome.cancelled) + len(outcome.held)
        report.released = len(outcome.released)
        report.errors = [reason for _, _, reason in outcome.retry[:3]] + [r for _, r in outcome.failed[:3]]
        return report

    def _send_batch(self, batch: Batch, stop_at: datetime) -> Outcome:
        outcome = Outcome(provider=self.provider)
        templates = TemplateCache()  # each lesson rendered and its CSS inlined once per batch
        sendable = []
        for job in batch.jobs:
            verdict = _still_wanted(job, batch)
            if verdict == "cancel":
                outcome.cancelled.append(job.delivery_id)
            elif verdict == "hold":
                outcome.held.append(job.delivery_id)
            else:
                sendable.append(job)
        for position, job in enumerate(sendable):
            if self.clock.now() >= stop_at:
                outcome.released.extend(j.delivery_id for j in sendable[position:])
                log.warning("lease nearly over: released %d deliveries unsent", len(sendable) - position)
                break
            try:
                composed = self.composer.delivery(job, batch, templates)
                self.transport.send(composed.envelope_from, job.email, composed.message_bytes())
            except PermanentSendError as exc:
                outcome.bounced.append((job.delivery_id, job.subscriber_id, exc.reason))
            except ConnectionFailed as exc:
                # The server is down: nothing else in this batch can go either.
                for waiting in sendable[position:]:
                    self._retry_or_fail(outcome, waiting, exc.reason)
                log.warning("provider %s unreachable, %d deliveries wait: %s", self.provider, len(sendable) - position, exc.reason)
                break
            except TransientSendError as exc:
                self._retry_or_fail(outcome, job, exc.reason)
            except Exception as exc:  # a rendering bug must not lose the rest of the batch
                log.exception("cannot build delivery %d", job.delivery_id)
                self._retry_or_fail(outcome, job, f"cannot build message: {exc!r}")
            else:
                outcome.sent.append(job.delivery_id)
        return outcome

    def _retry_or_fail(self, outcome: Outcome, job: DeliveryJob, reason: str) -> None:
        if job.attempts >= self.settings.max_attempts:
            outcome.failed.append((job.delivery_id, f"gave up after {job.attempts} attempts: {reason}"))
            return
        delay = retry_delay(
            job.attempts, base_seconds=self.settings.retry_base_seconds, max_seconds=self.settings.retry_max_seconds
        )
        outcome.retry.append((job.delivery_id, self.clock.now() + wall_duration(self.clock, delay.total_seconds()), reason))



def _still_wanted(job: DeliveryJob, batch: Batch) -> str:
    """Checked at send time, after the row was claimed: a stop that came in between still wins."""
    if job.subscriber_status != SubscriberStatus.ACTIVE and job.kind != DeliveryKind.TRANSACTIONAL:
        return "cancel"
    if job.kind == DeliveryKind.LESSON:
        if job.enrollment_status == EnrollmentStatus.PAUSED:
            return "hold"
        if job.enrollment_status != EnrollmentStatus.ACTIVE:
            return "cancel"
        lesson = batch.lessons.get(job.lesson_id or 0)
        if lesson is None or lesson.retired:
            return "cancel"
    if job.kind == DeliveryKind.CAMPAIGN:
        campaign = batch.campaigns.get(job.campaign_id or 0)
        if campaign is None or campaign.cancelled:
            return "cancel"
    return "send"


