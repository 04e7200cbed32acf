"""The sender: takes over a claimed batch, checks each row is still wanted, renders, sends over the
one SMTP connection, and records the outcomes as they happen, a small group at a time
(course/delivery/outcomes.py), so a killed worker or a database blip costs at most one group.

Failures are handled where they happen:
- a 4xx reply, a time-out or a dropped connection puts the row back to pending with exponential
  back-off and jitter, for retry_window_seconds after the first attempt, then marks it failed with
  the reason;
- no reply after the end of DATA is an unknown outcome: the message may have been delivered, so it
  is never sent again at once, only after the same back-off;
- a 5xx reply marks the row bounced and suppresses the address everywhere;
- a server that cannot be reached at all stops the batch: every row not yet tried waits for its
  back-off, so a dead SMTP server costs one connection attempt per batch, not one per message;
- the batch stops before its lease runs out and releases the rest, so no message is ever sent by
  a task whose rows may already have been reclaimed by another.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from course.clock import Clock, wall_duration
from course.ledger import Batch, DeliveryJob, Outcome, message_id_for, record, take_over
from course.delivery.links import LinkPurpose, Signer
from course.delivery.mime import OutgoingMessage, build_message
from course.models import DeliveryKind, EnrollmentStatus, SubscriberStatus
from course.delivery.render import RenderedEmail, Renderer, Template, greeting_for
from course.audience.schedule import retry_delay
from course.settings import Settings
from course import metrics
from course.delivery.outcomes import GroupWriter
from course.delivery.transports.smtp import (
    ConnectionFailed,
    DeadlineReached,
    PermanentSendError,
    SMTPTransport,
    TransientSendError,
    UnknownOutcome,
)

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
    abandoned: bool = False  # outcomes could not be written before the lease ended
    outcome_writes: int = 0  # groups written
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Deadlines:
    """time.monotonic() values derived from the lease when the rows were taken over."""

    stop_starting: float  # no new message after this
    smtp: float  # no SMTP transaction runs past this
    give_up: float  # outcome writes are retried until this, then the task is abandoned


def _fields(job: DeliveryJob) -> dict[str, object]:
    """Structured fields of a log line about one delivery (for JSON log formatters)."""
    return {"delivery_id": job.delivery_id, "campaign_id": job.campaign_id, "lesson_id": job.lesson_id, "kind": job.kind}


def _about(job: DeliveryJob) -> str:
    where = f"campaign {job.campaign_id}" if job.campaign_id is not None else f"lesson {job.lesson_id}" if job.lesson_id is not None else job.template or job.kind
    return f"delivery {job.delivery_id} ({where}, attempt {job.attempts})"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds} s"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


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
        """1. Take the rows over (only those this token still holds).
        2. Derive three deadlines from the lease (wall-clock seconds from now): no new message after
           `stop_at`; no SMTP transaction past `smtp_deadline`; outcome writes retried until
           `give_up_at`. Past the lease another dispatcher may own the rows.
        3. Send one by one, recording outcomes as they happen in small groups (GroupWriter).
        4. If a group cannot be written before give_up_at, stop: the rows not recorded stay
           `sending` and come back when the lease expires (at most one group is sent twice)."""
        now = self.clock.now()
        lease = wall_duration(self.clock, self.settings.lease_seconds)
        with self.sessions.begin() as session:
            batch = take_over(session, delivery_ids, token=token, now=now, lease=lease)
        report = SendReport(taken=len(batch.jobs))
        if not batch.jobs:
            return report
        lease_seconds = float(self.settings.lease_seconds)
        started = time.monotonic()
        # Stop a safe margin before the lease ends: past it, another dispatcher may own the rows.
        stop_at = now + lease - min(lease / 5, wall_duration(self.clock, 60))
        deadlines = _Deadlines(
            stop_starting=started + lease_seconds - min(lease_seconds / 5, 60.0),
            smtp=started + lease_seconds - min(lease_seconds / 10, 30.0),
            give_up=started + lease_seconds - min(lease_seconds / 20, 5.0),
        )
        writer = GroupWriter(
            write=lambda group: self._record(group, token),
            give_up_at=deadlines.give_up,
            group_size=self.settings.outcome_group_size,
            group_seconds=self.settings.outcome_group_seconds,
            on_write=lambda result: metrics.OUTCOME_WRITES.labels(result).inc(),
        )
        everything = Outcome()
        self._send_batch(batch, stop_at, deadlines, writer, everything)
        if not writer.abandoned:
            writer.flush()
        report.sent = len(everything.sent)
        report.retried = len(everything.retry)
        report.failed = len(everything.failed)
        report.bounced = len(everything.bounced)
        report.skipped = len(everything.cancelled) + len(everything.held)
        report.released = len(everything.released)
        report.abandoned = writer.abandoned
        report.outcome_writes = writer.statements
        report.errors = [reason for _, _, reason in everything.retry[:3]] + [r for _, r in everything.failed[:3]]
        return report

    def _record(self, group: Outcome, token: str) -> None:
        with self.sessions.begin() as session:
            record(session, group, token=token, now=self.clock.now(), message_id_domain=self.settings.list_id_domain)

    def _send_batch(self, batch: Batch, stop_at: datetime, deadlines: _Deadlines, writer: GroupWriter, everything: Outcome) -> None:
        def note(kind: str, item: object) -> bool:
            getattr(writer.group, kind).append(item)
            getattr(everything, kind).append(item)
            return writer.added()

        templates: dict[tuple[str, int], Template] = {}
        sendable = []
        for job in batch.jobs:
            verdict = _still_wanted(job, batch)
            if verdict == "cancel":
                note("cancelled", job.delivery_id)
            elif verdict == "hold":
                note("held", job.delivery_id)
            else:
                sendable.append(job)
        for position, job in enumerate(sendable):
            if writer.abandoned:
                log.warning("outcomes not written: %d deliveries left to the lease", len(sendable) - position)
                return
            if self.clock.now() >= stop_at or time.monotonic() >= deadlines.stop_starting:
                for waiting in sendable[position:]:
                    writer.group.released.append(waiting.delivery_id)
                    everything.released.append(waiting.delivery_id)
                log.warning("lease nearly over: released %d deliveries unsent", len(sendable) - position)
                return
            try:
                sender_address, message = self._message(job, batch, templates)
                self.transport.send(sender_address, job.email, message, deadline=deadlines.smtp)
            except DeadlineReached:
                for waiting in sendable[position:]:
                    writer.group.released.append(waiting.delivery_id)
                    everything.released.append(waiting.delivery_id)
                return
            except PermanentSendError as exc:
                metrics.SMTP_REPLIES.labels(metrics.code_class(exc.code)).inc()
                log.warning("%s bounced: %s", _about(job), exc.reason, extra=_fields(job))
                note("bounced", (job.delivery_id, job.subscriber_id, exc.reason))
            except ConnectionFailed as exc:
                # The server is down: nothing else in this batch can go either.
                metrics.SMTP_REPLIES.labels("unreachable").inc()
                for waiting in sendable[position:]:
                    self._retry_or_fail(writer.group, waiting, exc.reason, also=everything)
                log.warning("SMTP unreachable, %d deliveries wait: %s", len(sendable) - position, exc.reason)
                return
            except UnknownOutcome as exc:
                # Perhaps delivered: back-off like a 4xx, never again at once (the same Message-ID
                # lets the receiving side see a repeat for what it is).
                metrics.SMTP_REPLIES.labels("unknown").inc()
                log.warning("%s unknown outcome: %s", _about(job), exc.reason, extra=_fields(job))
                self._retry_or_fail(writer.group, job, exc.reason, also=everything)
                writer.added()
            except TransientSendError as exc:
                metrics.SMTP_REPLIES.labels(metrics.code_class(exc.code)).inc()
                log.info("%s will be retried: %s", _about(job), exc.reason, extra=_fields(job))
                self._retry_or_fail(writer.group, job, exc.reason, also=everything)
                writer.added()
            except Exception as exc:  # a rendering bug must not lose the rest of the batch
                log.exception("cannot build %s", _about(job), extra=_fields(job))
                self._retry_or_fail(writer.group, job, f"cannot build message: {exc!r}", also=everything)
                writer.added()
            else:
                metrics.SMTP_REPLIES.labels("2xx").inc()
                if job.due_at is not None:
                    metrics.SEND_LATENCY.labels(job.kind).observe(max((self.clock.now() - job.due_at).total_seconds(), 0.0) / self.clock.speed)
                note("sent", job.delivery_id)

    def _retry_or_fail(self, outcome: Outcome, job: DeliveryJob, reason: str, *, also: Outcome | None = None) -> None:
        """Transient failure: back-off with jitter, until retry_window_seconds after the first
        attempt; then the row fails with the reason (`course retry-failed` can requeue it)."""
        now = self.clock.now()
        first = job.first_attempt_at or now
        window = wall_duration(self.clock, self.settings.retry_window_seconds)
        delay = retry_delay(
            job.attempts, base_seconds=self.settings.retry_base_seconds, max_seconds=self.settings.retry_max_seconds
        )
        next_due = now + wall_duration(self.clock, delay.total_seconds())
        for target in (outcome, also):
            if target is None:
                continue
            if next_due - first > window:
                target.failed.append((job.delivery_id, f"gave up after {job.attempts} attempts in {_span(now - first)}: {reason}"))
            else:
                target.retry.append((job.delivery_id, next_due, reason))

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


