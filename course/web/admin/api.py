"""The admin JSON API under /api/admin/…, for scripts and other services: every route needs an API
token (`Authorization: Bearer …`) with a role at least the route's, like the admin pages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from course.accounts.credentials import CredentialError, parse_role
from course.accounts.store import AccountError, create_api_token, list_api_tokens, revoke_api_token
from course.campaigns.progress import CampaignSummary, campaign_summaries, campaign_summary
from course.campaigns import service
from course.campaigns.audience import Audience, build_audience, tag_counts
from course.campaigns.refusals import CampaignRefused
from course.campaigns.timing import parse_schedule
from course.delivery.compose import Composer
from course.delivery.preview import campaign_preview
from course.models import AdminRole
from course.web.admin.auth import Actor, EditorToken, OwnerToken, SiteDep, ViewerToken
from course.web.admin.refusals import refusal_json


class ErrorOut(BaseModel):
    detail: str
    fields: dict[str, str] = Field(default_factory=dict, description="a message per refused field, when there are any")


# What any request may get before a route sees it (course.web.security): a control character in the
# path, query or a body field is refused, and so is a body over COURSE_MAX_ADMIN_REQUEST_BYTES.
_ANY_REQUEST: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "a control character in the path, the query or a body field"},
    413: {"model": ErrorOut, "description": "a body larger than the admin's limit (1 MB by default)"},
}
router = APIRouter(prefix="/api/admin", tags=["admin"], responses=_ANY_REQUEST)


_UNAUTHORIZED: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "no valid API token"},
    403: {"model": ErrorOut, "description": "the token's role is too low"},
}
# What every token route may answer before it runs: for routers in other modules of the admin API.
TOKEN_ROUTE_RESPONSES: dict[int | str, dict[str, object]] = {**_ANY_REQUEST, **_UNAUTHORIZED}
_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "no such campaign or token"}}
CampaignId = Annotated[int, Path(ge=1, le=2**31 - 1)]
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class Me(BaseModel):
    role: str = Field(description="owner, editor or viewer")


class ProgressOut(BaseModel):
    total: int
    sent: int
    failed: int
    bounced: int
    cancelled: int
    held: int
    remaining: int
    per_minute: int = Field(description="messages sent in the last minute")
    eta_seconds: int | None = Field(description="seconds until every row settles at the current rate")
    percent_settled: int


class CampaignOut(BaseModel):
    id: int
    name: str
    subject: str
    status: str
    segment_tag: str | None
    sender_name: str
    sender_email: str
    send_at: datetime | None
    created_at: datetime
    progress: ProgressOut
    provider: str | None = Field(None, description="the mail provider it takes first (null: routed by its From domain)")
    paused_reason: str | None = Field(None, description="why the system paused it (its error rate), if it did")


class AudienceIn(BaseModel):
    """Who gets the campaign: active subscribers only, narrowed by these (all empty: everyone)."""

    tags_any: list[str] = Field(default_factory=list, max_length=20, description="has at least one of these tags")
    tags_all: list[str] = Field(default_factory=list, max_length=20, description="has every one of these tags")
    course: str | None = Field(None, max_length=100, description="enrolled in this course (slug)")
    course_stage: Literal["any", "active", "finished"] = "any"
    min_lesson: int | None = Field(None, ge=1, le=1000, description="has been sent this lesson of the course or a later one")
    exclude_tags: list[str] = Field(default_factory=list, max_length=20, description="has none of these tags")


class CampaignIn(BaseModel):
    # The limits are the editor's own (course.campaigns.service), so a longer value is refused here.
    name: str = Field(max_length=service.MAX_NAME_CHARS)
    subject: str = Field(max_length=service.MAX_SUBJECT_CHARS)
    preheader: str = Field("", max_length=service.MAX_PREHEADER_CHARS)
    sender: str = Field(max_length=400, description="an address from COURSE_CAMPAIGN_SENDERS")
    provider: str = Field("", max_length=64, description="a configured mail provider it takes first; empty: routed by its From domain")
    body_markdown: str = Field(max_length=service.MAX_BODY_CHARS, description="Markdown; some HTML allowed, sanitised")
    audience: AudienceIn = Field(default_factory=AudienceIn)


class CampaignReplaceIn(BaseModel):
    """What a PUT replaces: every field, the audience included (`{}` is everyone, said on purpose)."""

    name: str = Field(max_length=service.MAX_NAME_CHARS)
    subject: str = Field(max_length=service.MAX_SUBJECT_CHARS)
    preheader: str = Field(max_length=service.MAX_PREHEADER_CHARS)
    sender: str = Field(max_length=400, description="an address from COURSE_CAMPAIGN_SENDERS")
    provider: str = Field("", max_length=64, description="a configured mail provider it takes first; empty: routed by its From domain")
    body_markdown: str = Field(max_length=service.MAX_BODY_CHARS, description="Markdown; some HTML allowed, sanitised")
    audience: AudienceIn


class CampaignDetailOut(CampaignOut):
    unsubscribed_within_7_days: int = Field(description="recipients who unsubscribed within a week of their own send")
    preheader: str
    body_markdown: str
    audience: AudienceIn
    audience_description: str
    send_local: datetime | None = Field(description="a wall time sent in each subscriber's own time zone")


class CountOut(BaseModel):
    count: int = Field(description="active subscribers the audience reaches now")


class ScheduleIn(BaseModel):
    mode: Literal["now", "at", "local"] = Field(description="now; at a moment in `zone`; or at `day` `at` in each subscriber's zone")
    day: str = Field("", max_length=20, description="YYYY-MM-DD (at, local)")
    at: str = Field("", max_length=10, description="HH:MM (at, local)")
    zone: str = Field("UTC", max_length=64, description="an IANA time zone (at)")


class ScheduledOut(BaseModel):
    send_at: datetime
    recipients: int
    at_once: int = Field(description="recipients whose moment had already come: they get it at once")


class TagOut(BaseModel):
    tag: str
    active_subscribers: int


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: AdminRole


class CreatedToken(TokenOut):
    token: str = Field(description="the token itself: shown this once")


def _progress(summary: CampaignSummary) -> ProgressOut:
    p = summary.progress
    return ProgressOut(
        total=p.total, sent=p.sent, failed=p.failed, bounced=p.bounced, cancelled=p.cancelled, held=p.held,
        remaining=p.remaining, per_minute=p.per_minute, eta_seconds=p.eta_seconds, percent_settled=p.percent_settled,
    )  # fmt: skip


def _campaign(summary: CampaignSummary) -> dict[str, object]:
    c = summary.campaign
    return dict(
        id=c.id, name=c.name, subject=c.subject, status=c.status, segment_tag=c.segment_tag, sender_name=c.sender_name,
        sender_email=c.sender_email, send_at=c.send_at, created_at=c.created_at, progress=_progress(summary),
        provider=c.provider, paused_reason=c.paused_reason,
    )  # fmt: skip


@router.get("/me", response_model=Me, responses=_UNAUTHORIZED)
def me(actor: ViewerToken) -> Me:
    """The role of the token making the call."""
    return Me(role=actor.role)


@router.get("/campaigns", response_model=list[CampaignOut], responses=_UNAUTHORIZED)
def list_campaigns(site: SiteDep, actor: ViewerToken) -> list[CampaignOut]:
    """Every campaign, newest first, with its progress."""
    with site.sessions.begin() as session:
        return [CampaignOut(**_campaign(summary)) for summary in campaign_summaries(session, now=site.now())]


def _audience_in(audience: Audience) -> AudienceIn:
    return AudienceIn(
        tags_any=list(audience.tags_any), tags_all=list(audience.tags_all), course=audience.course,
        course_stage=audience.course_stage.value, min_lesson=audience.min_lesson, exclude_tags=list(audience.exclude_tags),
    )  # fmt: skip


def _detail(summary: CampaignSummary) -> CampaignDetailOut:
    c = summary.campaign
    audience = service.audience_of(c)
    return CampaignDetailOut(
        **_campaign(summary), preheader=c.preheader, body_markdown=c.body_markdown, audience=_audience_in(audience),
        audience_description=audience.describe(), send_local=c.send_local,
        unsubscribed_within_7_days=summary.unsubscribed or 0,
    )  # fmt: skip


def _summary(site: SiteDep, campaign_id: int) -> CampaignSummary:
    with site.sessions.begin() as session:
        summary = campaign_summary(session, campaign_id, now=site.now())
    if summary is None:
        raise HTTPException(404, f"no campaign with id {campaign_id}")
    return summary


@router.get(
    "/campaigns/{campaign_id}", response_model=CampaignDetailOut, responses={**_UNAUTHORIZED, **_NOT_FOUND}
)
def get_campaign(campaign_id: CampaignId, site: SiteDep, actor: ViewerToken) -> CampaignDetailOut:
    return _detail(_summary(site, campaign_id))


@router.get(
    "/campaigns/{campaign_id}/progress", response_model=ProgressOut, responses={**_UNAUTHORIZED, **_NOT_FOUND}
)
def get_progress(campaign_id: CampaignId, site: SiteDep, actor: ViewerToken) -> ProgressOut:
    """Sent, failed, bounced and remaining rows, the rate over the last minute and an ETA."""
    return _progress(_summary(site, campaign_id))


@router.get("/tags", response_model=list[TagOut], responses=_UNAUTHORIZED)
def list_tags(site: SiteDep, actor: ViewerToken) -> list[TagOut]:
    """Every tag in use, with how many active subscribers have it."""
    with site.sessions.begin() as session:
        rows = tag_counts(session)
    return [TagOut(tag=tag, active_subscribers=count) for tag, count in rows]


def _token_out(token: object) -> dict[str, object]:
    return {name: getattr(token, name) for name in TokenOut.model_fields}


@router.get("/tokens", response_model=list[TokenOut], responses=_UNAUTHORIZED)
def list_tokens(site: SiteDep, actor: OwnerToken) -> list[TokenOut]:
    with site.sessions.begin() as session:
        return [TokenOut(**_token_out(token)) for token in list_api_tokens(session)]


@router.post(
    "/tokens", response_model=CreatedToken, status_code=201,
    responses={**_UNAUTHORIZED, 400: {"model": ErrorOut, "description": "a name the rules refuse"}},
)  # fmt: skip
def create_token(site: SiteDep, actor: OwnerToken, body: Annotated[NewToken, Body()]) -> CreatedToken:
    """A new token with a role of its own; its value is in this answer only."""
    try:
        with site.sessions.begin() as session:
            token, raw = create_api_token(session, name=body.name, role=parse_role(body.role), created_by=None, now=site.wall_now())
            return CreatedToken(**_token_out(token), token=raw)
    except (AccountError, CredentialError) as exc:
        raise HTTPException(400, str(exc)) from None


@router.post(
    "/tokens/{token_id}/revoke", response_model=TokenOut, responses={**_UNAUTHORIZED, **_NOT_FOUND}
)
def revoke_token(token_id: TokenId, site: SiteDep, actor: OwnerToken) -> TokenOut:
    try:
        with site.sessions.begin() as session:
            return TokenOut(**_token_out(revoke_api_token(session, token_id, now=site.wall_now())))
    except AccountError as exc:
        raise HTTPException(404, str(exc)) from None


# --- editing (editor tokens) ---------------------------------------------------------------------

_EDIT_ERRORS: dict[int | str, dict[str, object]] = {
    **_UNAUTHORIZED,
    400: {"model": ErrorOut, "description": "refused input: `fields` says what is wrong with each field"},
    404: {"model": ErrorOut, "description": "no such campaign"},
    409: {"model": ErrorOut, "description": "the campaign's state does not allow it (e.g. edited while sending)"},
}


def refused_input(exc: RequestValidationError) -> JSONResponse:
    """The admin API's answer to a request its schema refuses (a missing field, a wrong type, a
    value too long): 400 with a message per field, like every other refusal of input."""
    fields: dict[str, str] = {}
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        name = ".".join(location[1:]) if len(location) > 1 else "body"
        fields.setdefault(name, "Missing: this field is required." if error.get("type") == "missing" else str(error.get("msg", "not valid")))
    return JSONResponse({"detail": "refused input: " + "; ".join(f"{name}: {message}" for name, message in fields.items()), "fields": fields}, status_code=400)


def _draft(site: SiteDep, body: CampaignIn | CampaignReplaceIn) -> service.Draft:
    a = body.audience
    audience = build_audience(
        tags_any=a.tags_any, tags_all=a.tags_all, course=a.course or "", course_stage=a.course_stage,
        min_lesson=a.min_lesson, exclude_tags=a.exclude_tags,
    )  # fmt: skip
    return service.check_draft(
        name=body.name, subject=body.subject, preheader=body.preheader, sender=body.sender, body_markdown=body.body_markdown,
        audience=audience, senders=service.parse_senders(site.settings.campaign_senders),
        provider=body.provider, providers=list(site.settings.provider_settings),
    )  # fmt: skip


def _author(actor: Actor) -> int | None:
    return actor.admin.admin_id if actor.admin else None


@router.post("/campaigns", response_model=CampaignDetailOut, status_code=201, responses=_EDIT_ERRORS)
def create_campaign(site: SiteDep, actor: EditorToken, body: Annotated[CampaignIn, Body()]) -> CampaignDetailOut | JSONResponse:
    """A new draft. Nothing is sent until it is scheduled."""
    try:
        draft = _draft(site, body)
        with site.sessions.begin() as session:
            campaign_id = service.create_draft(session, draft, author=_author(actor), now=site.now()).id
    except CampaignRefused as exc:
        return refusal_json(exc)
    return _detail(_summary(site, campaign_id))


@router.put("/campaigns/{campaign_id}", response_model=CampaignDetailOut, responses=_EDIT_ERRORS)
def update_campaign(
    campaign_id: CampaignId, site: SiteDep, actor: EditorToken, body: Annotated[CampaignReplaceIn, Body()]
) -> CampaignDetailOut | JSONResponse:
    """Replace a draft's content, every field of it: a missing field is refused (400, per field).
    A scheduled campaign is unscheduled first (else 409), as one that is sending or done (409)."""
    try:
        draft = _draft(site, body)
        with site.sessions.begin() as session:
            service.update_draft(session, campaign_id, draft, now=site.now())
    except CampaignRefused as exc:
        return refusal_json(exc)
    return _detail(_summary(site, campaign_id))


@router.delete("/campaigns/{campaign_id}", status_code=204, responses=_EDIT_ERRORS)
def delete_campaign(campaign_id: CampaignId, site: SiteDep, actor: EditorToken) -> Response:
    """Delete a draft that never reached the ledger; any other campaign (or one with test sends): 409."""
    try:
        with site.sessions.begin() as session:
            service.delete_draft(session, campaign_id)
    except CampaignRefused as exc:
        return refusal_json(exc)
    return Response(status_code=204)


@router.post("/campaigns/{campaign_id}/duplicate", response_model=CampaignDetailOut, status_code=201, responses=_EDIT_ERRORS)
def duplicate_campaign(campaign_id: CampaignId, site: SiteDep, actor: EditorToken) -> CampaignDetailOut | JSONResponse:
    """A new draft with this campaign's content."""
    try:
        with site.sessions.begin() as session:
            copy_id = service.duplicate(session, campaign_id, author=_author(actor), now=site.now()).id
    except CampaignRefused as exc:
        return refusal_json(exc)
    return _detail(_summary(site, copy_id))


@router.post("/audience/count", response_model=CountOut, responses=_EDIT_ERRORS)
def count_audience(site: SiteDep, actor: ViewerToken, body: Annotated[AudienceIn, Body()]) -> CountOut | JSONResponse:
    """How many active subscribers an audience reaches now (an unknown tag or course: 400)."""
    try:
        audience = build_audience(
            tags_any=body.tags_any, tags_all=body.tags_all, course=body.course or "", course_stage=body.course_stage,
            min_lesson=body.min_lesson, exclude_tags=body.exclude_tags,
        )  # fmt: skip
        with site.sessions.begin() as session:
            return CountOut(count=service.audience_count(session, audience))
    except CampaignRefused as exc:
        return refusal_json(exc)


@router.post("/campaigns/{campaign_id}/schedule", response_model=ScheduledOut, responses=_EDIT_ERRORS)
def schedule_campaign(
    campaign_id: CampaignId, site: SiteDep, actor: EditorToken, body: Annotated[ScheduleIn, Body()]
) -> ScheduledOut | JSONResponse:
    """Schedule a draft; a time in the past, or an audience that reaches nobody, is refused (400)."""
    try:
        when = parse_schedule(body.mode, body.day, body.at, body.zone)
        with site.sessions.begin() as session:
            result = service.schedule(session, campaign_id, when, now=site.now())
    except CampaignRefused as exc:
        return refusal_json(exc)
    return ScheduledOut(send_at=result.send_at, recipients=result.recipients, at_once=result.at_once)


def _state_change(site: SiteDep, campaign_id: int, change: str) -> CampaignDetailOut | JSONResponse:
    try:
        with site.sessions.begin() as session:
            service.change_state(session, campaign_id, change, now=site.now())
    except CampaignRefused as exc:
        return refusal_json(exc)
    return _detail(_summary(site, campaign_id))


@router.post("/campaigns/{campaign_id}/unschedule", response_model=CampaignDetailOut, responses=_EDIT_ERRORS)
def unschedule_campaign(campaign_id: CampaignId, site: SiteDep, actor: EditorToken) -> CampaignDetailOut | JSONResponse:
    """Back to draft (before its fan-out began), so it can be edited; 409 if it is not scheduled."""
    return _state_change(site, campaign_id, "unschedule")


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignDetailOut, responses=_EDIT_ERRORS)
def pause_campaign(campaign_id: CampaignId, site: SiteDep, actor: EditorToken) -> CampaignDetailOut | JSONResponse:
    """Hold every unsent row, those already handed to a worker included."""
    return _state_change(site, campaign_id, "pause")


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignDetailOut, responses=_EDIT_ERRORS)
def resume_campaign(campaign_id: CampaignId, site: SiteDep, actor: EditorToken) -> CampaignDetailOut | JSONResponse:
    """Send each held row, once."""
    return _state_change(site, campaign_id, "resume")


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignDetailOut, responses=_EDIT_ERRORS)
def cancel_campaign(campaign_id: CampaignId, site: SiteDep, actor: EditorToken) -> CampaignDetailOut | JSONResponse:
    """Settle every unsent row as cancelled."""
    return _state_change(site, campaign_id, "cancel")


class PreviewOut(BaseModel):
    shown_as: str = Field(description="the subscriber whose name and links it carries")
    note: str = Field(description="why someone else stands in for the subscriber asked for (else empty)")
    sender: str
    to: str
    subject: str
    html: str = Field(description="the HTML part, exactly as sent")
    text: str = Field(description="the plain-text part, exactly as sent")


@router.get("/campaigns/{campaign_id}/preview", response_model=PreviewOut, responses={**_UNAUTHORIZED, **_NOT_FOUND})
def preview_campaign(
    campaign_id: CampaignId, site: SiteDep, actor: ViewerToken,
    subscriber: Annotated[str, Query(max_length=320, description="the subscriber's address (blank: the audience's first)")] = "",
) -> PreviewOut:  # fmt: skip
    """The campaign exactly as a subscriber receives it: subject, HTML and text, their name and links."""
    with site.sessions.begin() as session:
        found = campaign_preview(session, Composer.from_settings(site.settings, renderer=site.renderer), campaign_id, subscriber)
    if found is None:
        raise HTTPException(404, f"no campaign with id {campaign_id}")
    _, preview = found
    note, message = preview.note, preview.composed.message
    return PreviewOut(
        shown_as=message.recipient_address, note=note, sender=f"{message.sender_name} <{message.sender_address}>",
        to=f"{message.recipient_name} <{message.recipient_address}>" if message.recipient_name else message.recipient_address,
        subject=message.subject, html=message.html, text=message.text,
    )  # fmt: skip


class TestIn(BaseModel):
    address: str = Field(max_length=320, description="where the test goes")
    preview_as: str = Field("", max_length=320, description="the subscriber it is composed for (blank: the audience's first)")


class TestOut(BaseModel):
    address: str
    shown_as: str = Field(description="the subscriber whose name and links it carries")


@router.post("/campaigns/{campaign_id}/test", response_model=TestOut, status_code=202, responses=_EDIT_ERRORS)
def send_test(
    campaign_id: CampaignId, site: SiteDep, actor: EditorToken, body: Annotated[TestIn, Body()]
) -> TestOut | JSONResponse:
    """Queue a test send through the ledger, ahead of bulk mail, marked [Test], in no count."""
    try:
        with site.sessions.begin() as session:
            shown_as = service.send_test(session, campaign_id, address=body.address, preview_as=body.preview_as, now=site.now())
    except CampaignRefused as exc:
        return refusal_json(exc)
    return TestOut(address=body.address.strip(), shown_as=shown_as)
