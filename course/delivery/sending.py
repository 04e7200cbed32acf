"""The sender: takes over a claimed batch, checks each row is still wanted, renders, sends over the
one SMTP connection, and records every outcome in a few batched statements.

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
from course.ledger import Batch, DeliveryJob, Outcome, message_id_for, record, take_over
from course.delivery.links import LinkPurpose, Signer
from course.delivery.mime import OutgoingMessage, build_message
from course.models import DeliveryKind, EnrollmentStatus, SubscriberStatus
from course.delivery.render import RenderedEmail, Renderer, Template, greeting_for
from course.delivery.retry import retry_delay
from course.settings import Settings
from course.delivery.transports.smtp import ConnectionFailed, PermanentSendError, SMTPTransport, TransientSendError

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


# Account mail: template name -> (subject, purpose of the signed link in its `action_url` slot).
TRANSACTIONAL_MAIL: dict[str, tuple[str, LinkPurpose]] = {
    "confirm": ("Please confirm your place in {course}", LinkPurpose.CONFIRM),
    "already_enrolled": ("You are already enrolled in {course}", LinkPurpose.PREFERENCES),
}


class Sender:
    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        transport: SMTPTransport,
        renderer: Renderer,
        signer: Signer,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.transport = transport
        self.renderer = renderer
        self.signer = signer
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
        outcome = Outcome()
        templates: dict[tuple[str, int], Template] = {}
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
                sender_address, message = self._message(job, batch, templates)
                self.transport.send(sender_address, job.email, message)
            except PermanentSendError as exc:
                outcome.bounced.append((job.delivery_id, job.subscriber_id, exc.reason))
            except ConnectionFailed as exc:
                # The server is down: nothing else in this batch can go either.
                for waiting in sendable[position:]:
                    self._retry_or_fail(outcome, waiting, exc.reason)
                log.warning("SMTP unreachable, %d deliveries wait: %s", len(sendable) - position, exc.reason)
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

    def _message(self, job: DeliveryJob, batch: Batch, templates: dict[tuple[str, int], Template]) -> tuple[str, bytes]:
        values = {
            "greeting": greeting_for(job.name),
            "view_url": self.signer.url(LinkPurpose.VIEW, job.delivery_id),
            "preferences_url": self.signer.url(LinkPurpose.PREFERENCES, job.subscriber_id),
        }
        if job.kind == DeliveryKind.LESSON and job.lesson_id is not None:
            lesson = batch.lessons[job.lesson_id]
            key = ("lesson", lesson.lesson_id)
            if key not in templates:
                templates[key] = self.renderer.lesson_template(course=lesson.course, lesson=lesson)
            values["unsubscribe_url"] = self.signer.url(LinkPurpose.UNSUBSCRIBE, job.subscriber_id, lesson.course.course_id)
            sender = (lesson.course.sender_name, lesson.course.sender_email)
            list_id = f"{lesson.course.title} <{lesson.course.slug}.{self.settings.list_id_domain}>"
        elif job.kind == DeliveryKind.CAMPAIGN and job.campaign_id is not None:
            campaign = batch.campaigns[job.campaign_id]
            key = ("campaign", campaign.campaign_id)
            if key not in templates:
                templates[key] = self.renderer.campaign_template(
                    subject=campaign.subject, body_markdown=campaign.body_markdown, sender_name=campaign.sender_name
                )
            values["unsubscribe_url"] = self.signer.url(LinkPurpose.UNSUBSCRIBE, job.subscriber_id, None)
            sender = (campaign.sender_name, campaign.sender_email)
            list_id = f"{campaign.sender_name} <newsletter.{self.settings.list_id_domain}>"
        elif job.kind == DeliveryKind.TRANSACTIONAL and job.template in TRANSACTIONAL_MAIL and job.course_id:
            course = batch.courses[job.course_id]
            subject_format, purpose = TRANSACTIONAL_MAIL[job.template]
            key = (job.template, course.course_id)
            if key not in templates:
                templates[key] = self.renderer.transactional_template(
                    job.template, subject=subject_format.format(course=course.title), context={"course": course, "link_valid_days": self.settings.confirm_link_max_age_days}
                )
            values["action_url"] = self.signer.url(purpose, job.subscriber_id, course.course_id)
            values["unsubscribe_url"] = self.signer.url(LinkPurpose.UNSUBSCRIBE, job.subscriber_id, course.course_id)
            sender = (course.sender_name, course.sender_email)
            list_id = ""
        else:
            raise ValueError(f"delivery {job.delivery_id} ({job.kind}, template {job.template!r}) has nothing to send")
        email: RenderedEmail = templates[key].fill(values)
        message = build_message(
            OutgoingMessage(
                sender_name=sender[0],
                sender_address=sender[1],
                recipient_name=job.name,
                recipient_address=job.email,
                subject=email.subject,
                text=email.text,
                html=email.html,
                message_id=message_id_for(job.delivery_id, self.settings.list_id_domain),
                date=self.clock.now(),
                list_id=list_id,
                unsubscribe_url=values["unsubscribe_url"],
                unsubscribe_mailto=self.settings.unsubscribe_mailto,
            )
        )
        return sender[1], message


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


