"""The campaign service: everything the web admin, the admin API, the CLI and the workers do to a
campaign, in three parts.

1. Drafts: check a draft's content (pure), create, edit, duplicate, delete; the audience it reaches.
2. The lifecycle: one state machine, its allowed moves in one table (TRANSITIONS):

       draft --schedule--> scheduled --fan_out--> sending --finish (last row settles)--> done
       scheduled --unschedule--> draft;  scheduled or sending --pause--> paused --resume--> back
       anything but done --cancel--> cancelled;  a draft with nothing in the ledger --delete--> gone

   Each move locks the row or is one conditional UPDATE, so a campaign that started sending in
   between is refused, never half-changed. Fan-out is one INSERT … SELECT (course.ledger writes the
   rows), so a million recipients cost one statement; the unique (subscriber, campaign) constraint
   with ON CONFLICT DO NOTHING makes a repeated or concurrent fan-out harmless.
3. Test sends and tags.

Refusals are typed (course.campaigns.refusals): not found, the state does not allow it, input
refused per field, an audience of nobody."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from course.audience.enrollment import SubscriptionError, find_subscriber, normalize_email
from course.audience.schedule import local_moment, parse_timezone
from course.campaigns.audience import (
    Audience,
    AudienceError,
    build_audience,
    check_audience,
    count_audience,
    normalize_tag,
    recipients,
    resolve_course,
)
from course.campaigns.refusals import AudienceEmpty, CampaignNotFound, DraftExists, InputRefused, StateRefused
from course.campaigns.timing import PAST_TOLERANCE, Schedule, local_due_at, recipient_zones, zone_moments
from course.content import merge_tags
from course.content.article import ArticleError
from course.content.markdown_reader import newsletter_blocks
from course.ledger import (
    add_campaign_test,
    cancel_campaign_rows,
    fan_out_campaign_rows,
    hold_campaign_rows,
    release_campaign_rows,
)
from course.models import (
    UNSETTLED_DELIVERY_STATES,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryState,
    Subscriber,
    SubscriberTag,
)

ANALYZE_AFTER_ROWS = 10_000  # a fan-out this large refreshes the ledger's planner statistics


# --- drafts ----------------------------------------------------------------------------------------

MAX_BODY_CHARS = 50_000  # a long newsletter is 5,000 words; this is ten of them
MAX_NAME_CHARS = 200
MAX_SUBJECT_CHARS = 300
MAX_PREHEADER_CHARS = 200
_LINE_BREAK = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # NUL and friends: no database or mail wants them
# HTML no email may carry. The renderer's sanitiser (nh3) would strip it anyway; refusing it here
# tells the editor, instead of silently sending something other than what they wrote.
_UNSAFE_HTML = re.compile(
    r"<\s*/?\s*(script|iframe|object|embed|form|style|link|meta|base)\b|\son[a-z]+\s*=|(javascript|vbscript|data)\s*:\s*[^\s]",
    re.IGNORECASE,
)



@dataclass(frozen=True)
class Sender:
    name: str
    email: str

    @property
    def label(self) -> str:
        return f"{self.name} <{self.email}>"


def parse_senders(configured: str) -> list[Sender]:
    """settings.campaign_senders -> the senders an editor may choose from (bad entries skipped)."""
    senders = []
    for name, address in getaddresses([configured.replace("\n", ",")]):
        try:
            senders.append(Sender(name.strip() or address, normalize_email(address)))
        except SubscriptionError:
            continue
    return senders


@dataclass(frozen=True)
class Draft:
    """A campaign's content as the editor wrote it, checked."""

    name: str
    subject: str
    preheader: str
    sender: Sender
    body_markdown: str
    audience: Audience
    provider: str | None = None  # the mail provider it takes first; None: routed by From domain


def _line(value: str, *, label: str, limit: int, required: bool = True) -> tuple[str, str]:
    if _LINE_BREAK.search(value):
        return value, f"The {label} must be one line: no line breaks."
    if _CONTROL.search(value):
        return value, f"The {label} contains control characters."
    cleaned = value.strip()
    if required and not cleaned:
        return cleaned, f"The {label} is empty."
    if len(cleaned) > limit:
        return cleaned, f"The {label} is longer than {limit} characters."
    return cleaned, ""


def check_draft(
    *, name: str, subject: str, preheader: str, sender: str, body_markdown: str, audience: Audience, senders: list[Sender],
    provider: str = "", providers: Sequence[str] = (),
) -> Draft:
    """Pure: every field checked at once; InputRefused carries a message per bad field. `provider`
    ("" for none) must be one of the configured `providers`."""
    errors: dict[str, str] = {}
    chosen_provider = provider.strip() or None
    if chosen_provider is not None and chosen_provider not in providers:
        errors["provider"] = f"Choose a provider from the list (configured: {', '.join(providers) or 'none'})."
    clean_name, errors["name"] = _line(name, label="name", limit=MAX_NAME_CHARS)
    clean_subject, errors["subject"] = _line(subject, label="subject", limit=MAX_SUBJECT_CHARS)
    clean_preheader, errors["preheader"] = _line(preheader, label="preheader", limit=MAX_PREHEADER_CHARS, required=False)
    chosen = next((s for s in senders if sender.strip() in (s.email, s.label)), None)
    errors["sender"] = "" if chosen else "Choose a sender from the list."
    body = body_markdown.replace("\r\n", "\n")
    if not body.strip():
        errors["body_markdown"] = "The body is empty."
    elif _CONTROL.search(body.replace("\n", "").replace("\t", "")):
        errors["body_markdown"] = "The body contains control characters (other than line breaks and tabs)."
    elif len(body) > MAX_BODY_CHARS:
        errors["body_markdown"] = f"The body is {len(body):,} characters; the most a campaign can have is {MAX_BODY_CHARS:,}."
    elif match := _UNSAFE_HTML.search(body):
        errors["body_markdown"] = (
            f"The body contains HTML that email cannot carry safely ({match.group(0).strip()!r}): scripts, "
            "frames, forms, styles and event handlers are not allowed. Remove it and use Markdown."
        )
    else:
        # The body is sent as lessons are: read into blocks (course.delivery.render), which refuses
        # what would swallow the rest of the message, such as a code fence never closed.
        try:
            newsletter_blocks(body)
        except ArticleError as exc:
            errors["body_markdown"] = f"{str(exc)[0].upper()}{str(exc)[1:]}."
    _check_merge_tags(errors, subject=clean_subject, preheader=clean_preheader, body=body, course_known=audience.course is not None)
    errors = {field: message for field, message in errors.items() if message}
    if errors:
        raise InputRefused("the campaign has mistakes: " + " ".join(errors.values()), errors)
    assert chosen is not None
    return Draft(clean_name, clean_subject, clean_preheader, chosen, body, audience, chosen_provider)


def _check_merge_tags(errors: dict[str, str], *, subject: str, preheader: str, body: str, course_known: bool) -> None:
    """A merge tag typed wrong, or one the audience has no value for, is a mistake of its field
    (where that field has no other): a reader must never get `{{ frist_name }}`."""
    for field, text, label, links in (
        ("subject", subject, "subject", False),
        ("preheader", preheader, "preheader", False),
        ("body_markdown", body, "body", True),
    ):
        if not errors.get(field):
            found = merge_tags.problems(text, field=label, course_known=course_known, links_allowed=links)
            if found:
                errors[field] = " ".join(message + "." for message in found[:5]) + (
                    f" ({len(found) - 5} more)" if len(found) > 5 else ""
                )


def _apply(campaign: Campaign, draft: Draft, now: datetime) -> None:
    campaign.name = draft.name
    campaign.subject = draft.subject
    campaign.preheader = draft.preheader
    campaign.sender_name = draft.sender.name
    campaign.sender_email = draft.sender.email
    campaign.body_markdown = draft.body_markdown
    campaign.provider = draft.provider
    campaign.audience = draft.audience.to_json()
    campaign.segment_tag = None
    campaign.updated_at = now



def create_draft(
    session: Session, draft: Draft, *, author: int | None, now: datetime, create_key: str | None = None
) -> Campaign:
    """A new draft. `create_key`: the creating form's idempotency key; a second draft from the same
    key is refused (DraftExists names the first), whether the first is committed or racing this one."""
    try:
        check_audience(session, draft.audience)
    except AudienceError as exc:
        raise _audience_refused(exc) from None
    if create_key:
        existing = session.scalar(select(Campaign.id).where(Campaign.create_key == create_key))
        if existing is not None:
            raise DraftExists(existing)
    campaign = Campaign(
        status=CampaignStatus.DRAFT, created_at=now, created_by=author, segment_tag=None, create_key=create_key or None
    )
    _apply(campaign, draft, now)
    try:
        with session.begin_nested():
            session.add(campaign)
            session.flush()
    except IntegrityError:
        # The same form, sent twice at once: the other request's draft won the unique key.
        existing = session.scalar(select(Campaign.id).where(Campaign.create_key == create_key))
        raise DraftExists(existing or 0) from None
    return campaign


def update_draft(session: Session, campaign_id: int, draft: Draft, *, now: datetime) -> Campaign:
    """Replace a draft's content with `draft`, whole. Anything else is refused (a scheduled
    campaign is unscheduled first); the row lock orders this edit and a schedule or fan-out."""
    campaign = _editable(session, campaign_id)
    try:
        check_audience(session, draft.audience)
    except AudienceError as exc:
        raise _audience_refused(exc) from None
    _apply(campaign, draft, now)
    session.flush()
    return campaign


def duplicate(session: Session, campaign_id: int, *, author: int | None, now: datetime) -> Campaign:
    original = session.get(Campaign, campaign_id)
    if original is None:
        raise CampaignNotFound(f"no campaign with id {campaign_id}")
    copy = Campaign(
        name=f"Copy of {original.name}"[:200],
        subject=original.subject,
        preheader=original.preheader,
        body_markdown=original.body_markdown,
        segment_tag=original.segment_tag,
        audience=original.audience,
        sender_name=original.sender_name,
        sender_email=original.sender_email,
        status=CampaignStatus.DRAFT,
        created_at=now,
        updated_at=now,
        created_by=author,
    )
    session.add(copy)
    session.flush()
    return copy


def _audience_refused(exc: AudienceError) -> InputRefused:
    """An audience refused as a form's field: its message, as a sentence."""
    return InputRefused(str(exc), {"audience": str(exc).capitalize() + "."})


def _stored_audience(stored: dict[str, Any] | None, segment_tag: str | None) -> Audience:
    """A campaign's audience from its columns; a campaign stored before audiences (the CLI's
    segment tag) reaches that tag's active subscribers, or everyone."""
    if stored is not None:
        return Audience.from_json(stored)
    return Audience(tags_any=(segment_tag,)) if segment_tag else Audience()


def audience_of(campaign: Campaign) -> Audience:
    return _stored_audience(campaign.audience, campaign.segment_tag)


def audience_count(session: Session, audience: Audience) -> int:
    try:
        return count_audience(session, audience)
    except AudienceError as exc:
        raise _audience_refused(exc) from None




# --- the lifecycle: one state machine ------------------------------------------------------------

S = CampaignStatus


@dataclass(frozen=True)
class Move:
    """One move of the lifecycle: from which states it is allowed, the state it leads to (None:
    the campaign is deleted), and what a refusal says (`{id}` and `{status}` filled in)."""

    allowed: frozenset[CampaignStatus]
    to: CampaignStatus | None
    refusal: str


# Every move a campaign can make, and nothing else: each function below asks this table.
TRANSITIONS: dict[str, Move] = {
    "edit": Move(frozenset({S.DRAFT}), S.DRAFT,
                 "campaign {id} is {status}: only drafts can be edited (duplicate it to send a changed copy)"),
    "delete": Move(frozenset({S.DRAFT}), None, "campaign {id} is {status}: only a draft can be deleted (cancel it instead)"),
    "schedule": Move(frozenset({S.DRAFT, S.SCHEDULED}), S.SCHEDULED,
                     "campaign {id} is {status}: only a draft or a scheduled campaign can be scheduled"),
    "unschedule": Move(frozenset({S.SCHEDULED}), S.DRAFT, "campaign {id} is {status}: only a scheduled campaign can be unscheduled"),
    "fan_out": Move(frozenset({S.SCHEDULED}), S.SENDING, "campaign {id} is {status}: it has been fanned out already"),
    "pause": Move(frozenset({S.SCHEDULED, S.SENDING}), S.PAUSED, "campaign {id} is {status}: it cannot be paused"),
    "resume": Move(frozenset({S.PAUSED}), S.SENDING, "campaign {id} is {status}: it cannot be resumed"),
    # Paused before its fan-out: back to waiting for its send time.
    "resume_before_fan_out": Move(frozenset({S.PAUSED}), S.SCHEDULED, "campaign {id} is {status}: it cannot be resumed"),
    "cancel": Move(frozenset({S.DRAFT, S.SCHEDULED, S.SENDING, S.PAUSED}), S.CANCELLED, "campaign {id} is already {status}"),
    "finish": Move(frozenset({S.SENDING}), S.DONE, "campaign {id} is {status}: only a sending campaign finishes"),
}  # fmt: skip
EDITABLE = tuple(TRANSITIONS["edit"].allowed)  # a scheduled campaign goes back to draft (unschedule) to be edited


def _locked(session: Session, campaign_id: int) -> Campaign:
    """The campaign, locked for this transaction."""
    campaign = session.scalars(select(Campaign).where(Campaign.id == campaign_id).with_for_update()).first()
    if campaign is None:
        raise CampaignNotFound(f"no campaign with id {campaign_id}")
    return campaign


def _allowed(campaign: Campaign, move: str) -> Move:
    """The move, if the campaign's state allows it; else StateRefused, in the table's words."""
    allowed = TRANSITIONS[move]
    if campaign.status not in allowed.allowed:
        raise StateRefused(allowed.refusal.format(id=campaign.id, status=campaign.status))
    return allowed


def _refuse_missed_update(session: Session, campaign_id: int, move: str) -> None:
    """After a conditional UPDATE changed nothing: say why (no such campaign, or its state)."""
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status is None:
        raise CampaignNotFound(f"no campaign with id {campaign_id}")
    raise StateRefused(TRANSITIONS[move].refusal.format(id=campaign_id, status=status))


def _editable(session: Session, campaign_id: int) -> Campaign:
    """The campaign, locked for this transaction, if it may be edited: a draft. A scheduled one is
    unscheduled first, so an edit never changes what is about to go out behind the schedule's back."""
    campaign = _locked(session, campaign_id)
    if campaign.status == CampaignStatus.SCHEDULED:
        raise StateRefused(
            f"campaign {campaign_id} is scheduled: unschedule it (back to draft) to edit it, then schedule it again"
        )
    _allowed(campaign, "edit")
    return campaign


@dataclass(frozen=True)
class Scheduled:
    send_at: datetime
    recipients: int
    at_once: int  # subscribers whose moment had already come: they get it at once
    send_local: datetime | None = None  # for "local": the wall time in each subscriber's zone


def plan_schedule(session: Session, campaign_id: int, when: Schedule, *, now: datetime) -> Scheduled:
    """What `schedule` would do, without doing it (the confirmation before scheduling):
    1. Lock the campaign; only a draft or a scheduled one can be (re)scheduled.
    2. Count the audience per time zone (one GROUP BY over the audience's SELECT): nobody, refused.
    3. The send time: now; a moment in a zone; or, for "local", the wall time in each recipient's
       zone, the fan-out starting at the earliest of them (zones already past it get it at once).
       A time in the past is refused: for "local", past in every recipient's zone."""
    campaign = _locked(session, campaign_id)
    _allowed(campaign, "schedule")
    audience = audience_of(campaign)
    try:
        course_id = check_audience(session, audience)
    except AudienceError as exc:
        raise _audience_refused(exc) from None
    zones = recipient_zones(session, recipients(audience, course_id))
    total = sum(zones.values())
    if total == 0:
        raise AudienceEmpty(f"campaign {campaign_id} would reach nobody: its audience has no active subscriber now")
    send_local = None
    at_once = total
    if when.mode == "now":
        send_at = now
    elif when.mode == "at":
        assert when.day is not None and when.at is not None
        moment = local_moment(when.day, when.at, parse_timezone(when.zone))
        if moment < now - PAST_TOLERANCE:
            raise InputRefused(
                f"{when.day} {when.at:%H:%M} {when.zone} has passed: choose a later time",
                {"day": "That moment has passed."},
            )
        send_at = max(moment, now)
        at_once = total if moment <= now else 0
    else:
        moments = zone_moments(when, list(zones))
        if max(moments.values()) < now - PAST_TOLERANCE:
            raise InputRefused(
                f"{when.day} {when.at:%H:%M} has passed in every subscriber's time zone: choose a later time",
                {"day": "That moment has passed everywhere."},
            )
        at_once = sum(count for zone, count in zones.items() if moments[zone] <= now)
        send_at = max(now, min(moments.values()))
        assert when.day is not None and when.at is not None
        send_local = datetime.combine(when.day, when.at)
    return Scheduled(send_at=send_at, recipients=total, at_once=at_once, send_local=send_local)


def schedule(session: Session, campaign_id: int, when: Schedule, *, now: datetime) -> Scheduled:
    """Schedule the campaign as plan_schedule says. The rows are written by the fan-out when
    send_at comes (fan_out)."""
    planned = plan_schedule(session, campaign_id, when, now=now)
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None  # locked by plan_schedule
    campaign.status = TRANSITIONS["schedule"].to
    campaign.send_at = planned.send_at
    campaign.send_local = planned.send_local
    campaign.updated_at = now
    session.flush()
    return planned


def _in(delta: timedelta) -> str:
    minutes = max(0, round(delta.total_seconds() / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes or not parts else []
    return " ".join(parts)


def _readers(count: int) -> str:
    return f"{count:,} reader{'' if count == 1 else 's'}"


def describe_schedule(planned: Scheduled, when: Schedule, *, now: datetime) -> str:
    """Pure: what scheduling will do, in one sentence for the confirmation ("Send to 26,412 readers
    at 09:00 in each reader's zone on Tue 8 Dec 2026, starting in 3 h 12 min.")."""
    who = _readers(planned.recipients)
    if when.mode == "now" or planned.send_at <= now and planned.at_once == planned.recipients:
        return f"Send to {who} now."
    assert when.day is not None and when.at is not None
    day = f"{when.day:%a} {when.day.day} {when.day:%b %Y}"
    if when.mode == "at":
        return f"Send to {who} at {when.at:%H:%M} {when.zone} on {day}, starting in {_in(planned.send_at - now)}."
    sentence = f"Send to {who} at {when.at:%H:%M} in each reader's own time zone on {day}"
    if planned.at_once:
        later = planned.recipients - planned.at_once
        return (
            f"{sentence}: {_readers(planned.at_once)} at once (that time has passed in their zone)"
            + (f", the other {later:,} as their zone reaches it." if later else ".")
        )
    return f"{sentence}, starting in {_in(planned.send_at - now)}."


def unschedule(session: Session, campaign_id: int, *, now: datetime) -> None:
    """Back to draft, before its fan-out began."""
    campaign = _locked(session, campaign_id)
    campaign.status = _allowed(campaign, "unschedule").to
    campaign.updated_at = now


def fan_out(session: Session, campaign_id: int, *, now: datetime) -> int:
    """Write one pending delivery row per recipient, due at the campaign's send_at. Returns how
    many rows were written.

    1. Move the campaign from scheduled to sending with a conditional UPDATE: of two concurrent
       fan-outs only one gets the row (the other blocks on its lock, then finds it sending).
    2. One INSERT … SELECT over the audience (course.ledger.fan_out_campaign_rows); ON CONFLICT DO
       NOTHING on (subscriber, campaign) makes a repeat after a crash between the two steps harmless.
    3. At a wall time in each subscriber's own zone: the moment per zone of the recipients, as a
       CASE on subscribers.timezone inside the same INSERT … SELECT.
    A campaign already sending, done or cancelled writes nothing."""
    move = TRANSITIONS["fan_out"]
    started = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_(move.allowed))
        .values(status=move.to, fanned_out_at=now)
        .returning(Campaign.segment_tag, Campaign.send_at, Campaign.audience, Campaign.send_local)
    ).first()
    if started is None:
        if session.get(Campaign, campaign_id) is None:
            raise CampaignNotFound(f"no campaign with id {campaign_id}")
        return 0
    segment_tag, send_at, stored_audience, send_local = started
    audience = _stored_audience(stored_audience, segment_tag)
    selected = recipients(audience, resolve_course(session, audience))
    due_at = send_at or now
    if send_local is not None:
        when = Schedule("local", send_local.date(), send_local.time())
        due_at = local_due_at(zone_moments(when, list(recipient_zones(session, selected))), now=now)
    return fan_out_campaign_rows(
        session, campaign_id, selected, due_at=due_at, now=now, analyze_after_rows=ANALYZE_AFTER_ROWS
    )


def due_campaigns(session: Session, *, now: datetime) -> list[int]:
    """Scheduled campaigns whose send time has come, oldest first."""
    return list(
        session.scalars(
            select(Campaign.id)
            .where(Campaign.status.in_(TRANSITIONS["fan_out"].allowed), Campaign.send_at <= now)
            .order_by(Campaign.send_at, Campaign.id)
        )
    )


def refresh_campaign_status(session: Session, campaign_id: int) -> str:
    """Finish: a sending campaign with no unsettled row left is done. Returns the campaign's status."""
    move = TRANSITIONS["finish"]
    session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status.in_(move.allowed),
            ~exists().where(Delivery.campaign_id == campaign_id, Delivery.state.in_(UNSETTLED_DELIVERY_STATES)),
        )
        .values(status=move.to)
        .execution_options(synchronize_session=False)
    )
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status is None:
        raise CampaignNotFound(f"no campaign with id {campaign_id}")
    return status


def sending_campaigns(session: Session) -> list[int]:
    return list(session.scalars(select(Campaign.id).where(Campaign.status == CampaignStatus.SENDING)))


def pause(session: Session, campaign_id: int, *, now: datetime) -> int:
    """Hold every unsent row, those already handed to a worker included (holding drops their lease,
    so the worker's take-over skips them). Rows a worker has already taken over finish sending.
    Returns how many rows were held."""
    campaign = _locked(session, campaign_id)
    campaign.status = _allowed(campaign, "pause").to
    campaign.paused_at = now
    return hold_campaign_rows(session, campaign_id)


@dataclass(frozen=True)
class ErrorRate:
    attempted: int  # rows sent, bounced or failed
    errors: int  # bounced or failed

    @property
    def rate(self) -> float:
        return self.errors / self.attempted if self.attempted else 0.0


def too_many_errors(rate: ErrorRate, *, max_error_rate: float, min_rows: int) -> bool:
    """Whether a campaign's error rate calls for a system pause (as listmonk's max-errors): only
    once `min_rows` rows were attempted, so the first bounce of a run does not stop it. Pure."""
    return max_error_rate < 1.0 and rate.attempted >= min_rows and rate.rate > max_error_rate


def campaign_error_rate(session: Session, campaign_id: int) -> ErrorRate:
    counts = dict(
        session.execute(
            select(Delivery.state, func.count())
            .where(Delivery.campaign_id == campaign_id, Delivery.state.in_([DeliveryState.SENT, DeliveryState.BOUNCED, DeliveryState.FAILED]))
            .group_by(Delivery.state)
        ).all()
    )
    errors = counts.get(DeliveryState.BOUNCED, 0) + counts.get(DeliveryState.FAILED, 0)
    return ErrorRate(attempted=errors + counts.get("sent", 0), errors=errors)


def pause_for_errors(session: Session, campaign_id: int, *, max_error_rate: float, min_rows: int, now: datetime) -> str | None:
    """The system's pause: when the campaign's rows bounced or failed past `max_error_rate` (a
    bad list, or a provider refusing its content), pause it through the same move as an editor's
    and keep why (campaigns.paused_reason, shown in the admin). Returns the reason when it paused
    the campaign; None when the rate is fine or the campaign is not sending (already paused, done,
    cancelled: nothing to do)."""
    rate = campaign_error_rate(session, campaign_id)
    if not too_many_errors(rate, max_error_rate=max_error_rate, min_rows=min_rows):
        return None
    campaign = _locked(session, campaign_id)
    if campaign.status not in TRANSITIONS["pause"].allowed:
        return None
    reason = (
        f"{rate.errors} of {rate.attempted} messages bounced or failed "
        f"({rate.rate:.0%}, more than the {max_error_rate:.0%} allowed by COURSE_CAMPAIGN_MAX_ERROR_RATE)"
    )
    pause(session, campaign_id, now=now)
    campaign.paused_reason = reason
    return reason


def resume(session: Session, campaign_id: int, *, now: datetime) -> int:
    """Each held row becomes pending again, once. A campaign paused before its fan-out is scheduled
    again (for its send time, or now if that has passed). Returns how many rows were released."""
    campaign = _locked(session, campaign_id)
    campaign.status = _allowed(campaign, "resume" if campaign.fanned_out_at else "resume_before_fan_out").to
    campaign.paused_at = None
    campaign.paused_reason = None
    campaign.updated_at = now
    return release_campaign_rows(session, campaign_id)


def cancel(session: Session, campaign_id: int) -> int:
    """Every unsent row settles as cancelled (rows a worker already took over are caught by the
    sender's check at send time). One conditional UPDATE, so it needs no lock. Returns how many
    rows were cancelled."""
    move = TRANSITIONS["cancel"]
    changed = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_(move.allowed))
        .values(status=move.to)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        _refuse_missed_update(session, campaign_id, "cancel")
    return cancel_campaign_rows(session, campaign_id)


# The admin's buttons and the API's routes that move a running campaign, by name.
_STATE_CHANGES: dict[str, Callable[[Session, int, datetime], object]] = {
    "pause": lambda session, campaign_id, now: pause(session, campaign_id, now=now),
    "resume": lambda session, campaign_id, now: resume(session, campaign_id, now=now),
    "cancel": lambda session, campaign_id, now: cancel(session, campaign_id),
    "unschedule": lambda session, campaign_id, now: unschedule(session, campaign_id, now=now),
}
STATE_CHANGES = tuple(_STATE_CHANGES)


def change_state(session: Session, campaign_id: int, change: str, *, now: datetime) -> None:
    """Pause, resume, cancel or unschedule the campaign, by the change's name (STATE_CHANGES)."""
    _STATE_CHANGES[change](session, campaign_id, now)


def ledger_rows_of(session: Session, campaign_id: int) -> int:
    """The campaign's rows in the delivery ledger, its test sends included: a campaign with any
    cannot be deleted (delete_draft), and its page offers to cancel it instead."""
    return session.scalar(
        select(func.count()).select_from(Delivery).where(or_(Delivery.campaign_id == campaign_id, Delivery.test_campaign_id == campaign_id))
    ) or 0


def delete_draft(session: Session, campaign_id: int) -> str:
    """Delete a draft that never reached the ledger. A campaign with any delivery row (a test send
    included) stays: those rows are the record of what was sent; cancel or keep it instead.
    Returns the deleted draft's name."""
    campaign = _locked(session, campaign_id)
    _allowed(campaign, "delete")
    in_ledger = ledger_rows_of(session, campaign_id)
    if in_ledger:
        raise StateRefused(
            f"campaign {campaign_id} has {in_ledger} message{'s' if in_ledger != 1 else ''} in the delivery ledger "
            "(test sends included), kept as the record of what was sent: it cannot be deleted"
        )
    name = campaign.name
    session.delete(campaign)
    return name


# --- test sends, tags, the CLI's one call --------------------------------------------------------


def send_test(session: Session, campaign_id: int, *, address: str, preview_as: str, now: datetime) -> str:
    """Queue a test of the campaign to `address`, composed as the subscriber `preview_as` gets it
    (blank: the first subscriber of its audience). It goes through the ledger ahead of bulk mail and
    is in no count of the campaign. Returns the subscriber it shows."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignNotFound(f"no campaign with id {campaign_id}")
    try:
        to = normalize_email(address)
    except SubscriptionError as exc:
        raise InputRefused(str(exc), {"test_address": str(exc).capitalize() + "."}) from None
    if preview_as.strip():
        subscriber = find_subscriber(session, preview_as.strip())
        if subscriber is None:
            message = f"no subscriber has the address {preview_as.strip()[:320]}"
            raise InputRefused(message, {"preview_as": message.capitalize() + "."})
    else:
        audience = audience_of(campaign)
        first = recipients(audience, resolve_course(session, audience)).order_by(Subscriber.id).limit(1)
        subscriber = session.scalars(select(Subscriber).where(Subscriber.id.in_(first))).first()
        if subscriber is None:
            raise AudienceEmpty("the campaign's audience has nobody to show it as: name a subscriber to preview as")
    add_campaign_test(session, campaign_id=campaign_id, subscriber_id=subscriber.id, address=to, now=now)
    return subscriber.email


def tag_subscribers(session: Session, email: str, tags: list[str]) -> list[str]:
    """Give an existing subscriber some tags (already present ones are kept). Returns the
    subscriber's tags afterwards."""
    try:
        address = normalize_email(email)
    except SubscriptionError as exc:
        raise InputRefused(str(exc)) from exc
    subscriber = find_subscriber(session, address)
    if subscriber is None:
        raise InputRefused(f"no subscriber with the address {address!r}")
    wanted = {normalize_tag(tag) for tag in tags}
    have = set(session.scalars(select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == subscriber.id)))
    session.add_all(SubscriberTag(subscriber_id=subscriber.id, tag=tag) for tag in sorted(wanted - have))
    session.flush()
    return sorted(wanted | have)


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
    """A draft for everyone or one tag, scheduled for send_at (now when None), through the same
    calls as the web and the API: check_draft, create_draft, schedule. The CLI's `campaign
    schedule`; nothing is written to the ledger until fan_out."""
    name_of_sender, problem = _line(sender_name, label="sender name", limit=MAX_NAME_CHARS)
    if problem:
        raise InputRefused(problem, {"sender": problem})
    try:
        sender = Sender(name_of_sender, normalize_email(sender_email))
    except SubscriptionError as exc:
        raise InputRefused(f"sender address: {exc}", {"sender": f"Sender address: {exc}."}) from None
    audience = build_audience(tags_any=[segment_tag] if segment_tag is not None else [])
    try:
        check_audience(session, audience)
    except AudienceError as exc:
        raise InputRefused(f"{exc}: the campaign would reach nobody", {"audience": str(exc)}) from None
    draft = check_draft(
        name=name, subject=subject, preheader="", sender=sender.email, body_markdown=body_markdown,
        audience=audience, senders=[sender],
    )  # fmt: skip
    campaign = create_draft(session, draft, author=None, now=now)
    if send_at is None:
        when = Schedule("now")
    else:
        moment = send_at.astimezone(UTC)
        when = Schedule("at", moment.date(), moment.time(), "UTC")
    schedule(session, campaign.id, when, now=now)
    return campaign


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
