"""The admin JSON API under /api/admin/…, for scripts and other services: every route needs an API
token (`Authorization: Bearer …`) with a role at least the route's, like the admin pages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path
from pydantic import BaseModel, Field

from course.accounts.credentials import CredentialError, parse_role
from course.accounts.store import AccountError, create_api_token, list_api_tokens, revoke_api_token
from course.campaigns.progress import CampaignSummary, campaign_summaries, campaign_summary
from course.campaigns.audience import tag_counts
from course.models import AdminRole
from course.web.admin.auth import OwnerToken, SiteDep, ViewerToken

router = APIRouter(prefix="/api/admin", tags=["admin"])

class ErrorOut(BaseModel):
    detail: str


_UNAUTHORIZED: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "no valid API token"},
    403: {"model": ErrorOut, "description": "the token's role is too low"},
}
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


class CampaignDetailOut(CampaignOut):
    body_markdown: str


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
    summary = _summary(site, campaign_id)
    return CampaignDetailOut(**_campaign(summary), body_markdown=summary.campaign.body_markdown)


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
            token, raw = create_api_token(session, name=body.name, role=parse_role(body.role), created_by=None, now=site.now())
            return CreatedToken(**_token_out(token), token=raw)
    except (AccountError, CredentialError) as exc:
        raise HTTPException(400, str(exc)) from None


@router.post(
    "/tokens/{token_id}/revoke", response_model=TokenOut, responses={**_UNAUTHORIZED, **_NOT_FOUND}
)
def revoke_token(token_id: TokenId, site: SiteDep, actor: OwnerToken) -> TokenOut:
    try:
        with site.sessions.begin() as session:
            return TokenOut(**_token_out(revoke_api_token(session, token_id, now=site.now())))
    except AccountError as exc:
        raise HTTPException(404, str(exc)) from None
