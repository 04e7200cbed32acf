"""The ledger audit behind `course audit`: the invariants that must hold whatever crashed, read in a
handful of queries and judged by pure functions.

1. No lease outlives its expiry: a row `leased` or `sending` whose lease ended more than a few
   dispatcher cycles ago means the dispatcher is not reclaiming rows (or is not running).
2. Nothing waits: a `pending` row due longer ago than `max_due_cycles` dispatcher intervals means
   mail is late (the dispatcher or the workers are down, or cannot keep up).
3. Every row is consistent with its state: a sent row has its sent time and Message-ID, an open
   row in flight holds a lease, a closed row holds none; a campaign marked done and an enrollment
   marked completed have nothing open left.
4. With a sink log (what the receiving server accepted, one Message-ID per line): every Message-ID
   arrived at most once (or at most `allowed_duplicates` extra copies in all), and every row
   recorded as sent arrived.

The queries only read; the audit can run at any time against a live system.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from course.ledger import MessageIds
from course.models import Campaign, CampaignStatus, Course, Delivery, DeliveryState, Enrollment, EnrollmentStatus

IN_FLIGHT_STATES = (DeliveryState.LEASED, DeliveryState.SENDING)
OPEN_STATES = (DeliveryState.PENDING, DeliveryState.HELD, DeliveryState.LEASED, DeliveryState.SENDING)
CLOSED_STATES = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.BOUNCED, DeliveryState.CANCELLED)
SAMPLE_SIZE = 5  # row ids quoted per failed check

_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str


@dataclass
class LedgerSnapshot:
    """What the checks read from the database, as plain values."""

    now: datetime
    expired_leases: int = 0
    expired_lease_sample: list[int] = field(default_factory=list)
    oldest_expired_lease: datetime | None = None
    overdue: int = 0
    overdue_sample: list[int] = field(default_factory=list)
    oldest_overdue: datetime | None = None
    # (scope, name) -> state -> count; scope is "course" or "campaign"
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    inconsistent: dict[str, list[int]] = field(default_factory=dict)  # rule -> sample of row ids
    inconsistent_counts: dict[str, int] = field(default_factory=dict)
    sent_message_ids: set[str] = field(default_factory=set)
    # Message-IDs of rows not (yet) recorded as sent: a sink copy of one of these means the server
    # accepted it but the ledger has not recorded it.
    unsent_message_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditReport:
    findings: list[Finding]
    duplicates: int = 0  # extra copies in the sink log, over all Message-IDs
    duplicated_ids: int = 0  # Message-IDs that arrived more than once

    @property
    def ok(self) -> bool:
        return all(finding.ok for finding in self.findings)


# --- reading ------------------------------------------------------------------------------------


def read_snapshot(session: Session, *, now: datetime, lease_grace: timedelta, due_grace: timedelta, message_ids: MessageIds) -> LedgerSnapshot:
    """Everything the checks need, in a few read-only statements."""
    snapshot = LedgerSnapshot(now=now)

    expired = and_(Delivery.state.in_(IN_FLIGHT_STATES), Delivery.lease_expires_at < now - lease_grace)
    snapshot.expired_leases, snapshot.oldest_expired_lease = session.execute(
        select(func.count(), func.min(Delivery.lease_expires_at)).where(expired)
    ).one()
    snapshot.expired_lease_sample = list(session.scalars(select(Delivery.id).where(expired).order_by(Delivery.id).limit(SAMPLE_SIZE)))

    overdue = and_(Delivery.state == DeliveryState.PENDING, Delivery.due_at < now - due_grace)
    snapshot.overdue, snapshot.oldest_overdue = session.execute(select(func.count(), func.min(Delivery.due_at)).where(overdue)).one()
    snapshot.overdue_sample = list(session.scalars(select(Delivery.id).where(overdue).order_by(Delivery.id).limit(SAMPLE_SIZE)))

    for name, state, count in session.execute(
        select(Course.slug, Delivery.state, func.count())
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .join(Course, Course.id == Enrollment.course_id)
        .group_by(Course.slug, Delivery.state)
    ):
        snapshot.counts.setdefault(("course", name), {})[state] = count
    for campaign_id, name, state, count in session.execute(
        select(Campaign.id, Campaign.name, Delivery.state, func.count())
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .group_by(Campaign.id, Campaign.name, Delivery.state)
    ):
        snapshot.counts.setdefault(("campaign", f"{name} (#{campaign_id})"), {})[state] = count

    rules = {
        "sent row without sent time or Message-ID": and_(
            Delivery.state == DeliveryState.SENT, or_(Delivery.sent_at.is_(None), Delivery.message_id.is_(None))
        ),
        "row in flight without a lease": and_(
            Delivery.state.in_(IN_FLIGHT_STATES), or_(Delivery.lease_token.is_(None), Delivery.lease_expires_at.is_(None))
        ),
        "row out of flight still holding a lease": and_(
            Delivery.state.not_in(IN_FLIGHT_STATES), or_(Delivery.lease_token.is_not(None), Delivery.lease_expires_at.is_not(None))
        ),
        "unsent row with a sent time": and_(Delivery.state != DeliveryState.SENT, Delivery.sent_at.is_not(None)),
        "campaign marked done with open rows": Delivery.campaign_id.in_(
            select(Campaign.id).where(Campaign.status == CampaignStatus.DONE)
        )
        & Delivery.state.in_(OPEN_STATES),
        "completed enrollment with open lessons": Delivery.enrollment_id.in_(
            select(Enrollment.id).where(Enrollment.status == EnrollmentStatus.COMPLETED)
        )
        & Delivery.lesson_id.is_not(None)
        & Delivery.state.in_(OPEN_STATES),
    }
    for rule, condition in rules.items():
        count = session.scalar(select(func.count()).where(condition)) or 0
        if count:
            snapshot.inconsistent_counts[rule] = count
            snapshot.inconsistent[rule] = list(
                session.scalars(select(Delivery.id).where(condition).order_by(Delivery.id).limit(SAMPLE_SIZE))
            )
    # A Message-ID is the row's id encrypted (course.ledger.message_id_for), which SQL cannot
    # compute: the sent rows' are compared here, streamed.
    not_their_own = [
        delivery_id
        for delivery_id, message_id in session.execute(
            select(Delivery.id, Delivery.message_id).where(Delivery.state == DeliveryState.SENT, Delivery.message_id.is_not(None)).order_by(Delivery.id)
        )
        if message_id != message_ids.for_delivery(delivery_id)
    ]
    if not_their_own:
        snapshot.inconsistent_counts["sent row whose Message-ID is not its own"] = len(not_their_own)
        snapshot.inconsistent["sent row whose Message-ID is not its own"] = not_their_own[:SAMPLE_SIZE]
    return snapshot


def read_message_ids(session: Session, *, message_ids: MessageIds) -> tuple[set[str], dict[str, str]]:
    """The Message-IDs of rows recorded sent, and the state of every other row by its Message-ID
    (a delivery's Message-ID is fixed by its id, whether or not it was ever sent)."""
    sent: set[str] = set()
    unsent: dict[str, str] = {}
    for delivery_id, state in session.execute(select(Delivery.id, Delivery.state)):
        message_id = message_ids.for_delivery(delivery_id)
        if state == DeliveryState.SENT:
            sent.add(message_id)
        else:
            unsent[message_id] = state
    return sent, unsent


def read_sink_log(path: Path) -> list[str]:
    """Message-IDs the receiving server accepted: the first Message-ID on each line of a text file,
    or the Message-ID header of every .eml file in a folder (the `course run` mail sink's)."""
    if path.is_dir():
        import email.policy
        from email.parser import BytesHeaderParser

        parser = BytesHeaderParser(policy=email.policy.default)
        found = []
        for eml in sorted(path.glob("*.eml")):
            header = parser.parsebytes(eml.read_bytes()).get("Message-ID")
            if header:
                found.append(str(header).strip())
        return found
    if not path.exists():
        raise FileNotFoundError(f"no sink log at {path}")
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _MESSAGE_ID.search(line)
        if match:
            found.append(match.group(0))
    return found


# --- judging (pure) -----------------------------------------------------------------------------


def check_ledger(snapshot: LedgerSnapshot, *, lease_grace: timedelta, due_grace: timedelta) -> list[Finding]:
    findings = []
    if snapshot.expired_leases:
        age = snapshot.now - snapshot.oldest_expired_lease if snapshot.oldest_expired_lease else timedelta(0)
        findings.append(
            Finding(
                "expired leases",
                False,
                f"{snapshot.expired_leases} rows still leased or sending {_ago(age)} after their lease ended "
                f"(more than {_ago(lease_grace)}), e.g. {_ids(snapshot.expired_lease_sample)}: is the dispatcher running?",
            )
        )
    else:
        findings.append(Finding("expired leases", True, f"no row leased or sending past its lease (+{_ago(lease_grace)})"))
    if snapshot.overdue:
        age = snapshot.now - snapshot.oldest_overdue if snapshot.oldest_overdue else timedelta(0)
        findings.append(
            Finding(
                "overdue rows",
                False,
                f"{snapshot.overdue} pending rows due for more than {_ago(due_grace)} (oldest {_ago(age)}), "
                f"e.g. {_ids(snapshot.overdue_sample)}: are beat and the workers running?",
            )
        )
    else:
        findings.append(Finding("overdue rows", True, f"nothing due for longer than {_ago(due_grace)}"))
    if snapshot.inconsistent_counts:
        for rule, count in snapshot.inconsistent_counts.items():
            findings.append(Finding("row states", False, f"{count} × {rule}, e.g. {_ids(snapshot.inconsistent[rule])}"))
    else:
        total = sum(sum(states.values()) for states in snapshot.counts.values())
        findings.append(Finding("row states", True, f"every row consistent with its state ({total} in courses and campaigns)"))
    return findings


def check_sink(received: Iterable[str], snapshot: LedgerSnapshot, *, allowed_duplicates: int = 0) -> tuple[list[Finding], int, int]:
    """Compare what the server accepted with what the ledger says was sent. Returns the findings,
    the extra copies in all, and how many Message-IDs arrived more than once."""
    copies = Counter(received)
    extra = sum(count - 1 for count in copies.values() if count > 1)
    duplicated = [message_id for message_id, count in copies.items() if count > 1]
    findings = []
    if extra > allowed_duplicates:
        sample = ", ".join(sorted(duplicated)[:SAMPLE_SIZE])
        findings.append(
            Finding(
                "duplicates",
                False,
                f"{len(duplicated)} Message-IDs arrived more than once ({extra} extra copies, allowed {allowed_duplicates}), e.g. {sample}",
            )
        )
    else:
        findings.append(Finding("duplicates", True, f"{len(copies)} Message-IDs, {extra} extra copies (allowed {allowed_duplicates})"))
    missing = snapshot.sent_message_ids - set(copies)
    if missing:
        findings.append(
            Finding("lost", False, f"{len(missing)} rows recorded sent never reached the sink, e.g. {', '.join(sorted(missing)[:SAMPLE_SIZE])}")
        )
    else:
        findings.append(Finding("lost", True, f"all {len(snapshot.sent_message_ids)} rows recorded sent reached the sink"))
    # Accepted but recorded as something else: not an error by itself (the row may be waiting out an
    # unknown outcome), but each one is a copy the next attempt will duplicate.
    unrecorded = Counter(snapshot.unsent_message_ids[m] for m in copies if m in snapshot.unsent_message_ids)
    if unrecorded:
        states = ", ".join(f"{count} {state}" for state, count in sorted(unrecorded.items()))
        findings.append(Finding("unrecorded", True, f"accepted by the server but not recorded as sent: {states}"))
    foreign = [m for m in copies if m not in snapshot.sent_message_ids and m not in snapshot.unsent_message_ids]
    if foreign:
        findings.append(Finding("unknown", True, f"{len(foreign)} Message-IDs in the sink log are not in this ledger"))
    return findings, extra, len(duplicated)


def audit(
    session: Session,
    *,
    now: datetime,
    lease_grace: timedelta,
    due_grace: timedelta,
    message_ids: MessageIds,
    sink_log: Path | None = None,
    allowed_duplicates: int = 0,
) -> AuditReport:
    """Read the ledger, then judge it (and the sink log, if one is given)."""
    snapshot = read_snapshot(session, now=now, lease_grace=lease_grace, due_grace=due_grace, message_ids=message_ids)
    findings = check_ledger(snapshot, lease_grace=lease_grace, due_grace=due_grace)
    if sink_log is None:
        return AuditReport(findings)
    received = read_sink_log(sink_log)
    snapshot.sent_message_ids, snapshot.unsent_message_ids = read_message_ids(session, message_ids=message_ids)
    sink_findings, extra, duplicated = check_sink(received, snapshot, allowed_duplicates=allowed_duplicates)
    return AuditReport(findings + sink_findings, duplicates=extra, duplicated_ids=duplicated)


def _ids(ids: list[int]) -> str:
    return "ids " + ", ".join(str(i) for i in ids)


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
