"""The campaign pages every role may read: the list with status and counts, and one campaign's
detail with its live progress. Editors also see the actions there (course/web/admin/editor.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from course.campaigns.service import EDITABLE, audience_of, ledger_rows_of
from course.campaigns.progress import campaign_summaries, campaign_summary, status_counts
from course.models import AdminRole, CampaignStatus
from course.web.admin.auth import Actor, AdminPageError, SiteDep, ViewerPage
from course.web.admin.views import admin_page
from course.web.site import Site

router = APIRouter(include_in_schema=False)

STATUS_FILTERS = ("", *[status.value for status in CampaignStatus])

COMMON_ZONES = (
    "UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Athens", "America/New_York",
    "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo", "Asia/Kolkata", "Asia/Singapore",
    "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland",
)  # fmt: skip

# What a redirect back to the campaign says; ?notice= carries only a key, never text.
NOTICES = {
    "saved": "Draft saved.",
    "duplicated": "This is a copy: a new draft. Edit it, then schedule it.",
    "unscheduled": "Back to draft: nothing will be sent until you schedule it again.",
    "paused": "Paused. Nothing more is sent until you resume; messages already handed to the mail server still go out.",
    "resumed": "Resumed: the held messages are being sent, each once.",
    "cancelled": "Cancelled. Every message not yet sent is settled as cancelled.",
    "deleted": "Draft deleted.",
    "exists": "This form had already made this draft (sent twice?): nothing new was made. Here it is.",
}


@router.get("/admin/campaigns", response_class=HTMLResponse)
def campaign_list(request: Request, site: SiteDep, actor: ViewerPage, status: str = "") -> HTMLResponse:
    chosen = status if status in STATUS_FILTERS else ""
    with site.sessions.begin() as session:
        summaries = campaign_summaries(session, now=site.now(), status=chosen or None)
        by_status = status_counts(session)
        return admin_page(
            site, request, "campaigns.html", actor=actor, summaries=summaries, by_status=by_status,
            status_filter=chosen, statuses=[s.value for s in CampaignStatus], total=sum(by_status.values()),
            can_edit=actor.may(AdminRole.EDITOR), notice=_notice(request),
            audiences={entry.campaign.id: audience_of(entry.campaign).summary() for entry in summaries},
        )  # fmt: skip


def _notice(request: Request) -> str:
    query = request.query_params
    if query.get("scheduled", "").isdigit():
        recipients = int(query["scheduled"])
        at_once = int(query["at_once"]) if query.get("at_once", "").isdigit() else 0
        text = f"Scheduled for {recipients:,} recipient{'s' if recipients != 1 else ''}."
        if 0 < at_once < recipients:
            text += f" {at_once:,} of them live where that time has already passed: they get it at once."
        return text
    return NOTICES.get(query.get("notice", ""), "")


def detail_page(site: Site, request: Request, actor: Actor, campaign_id: int, *, status: int = 200, **context: Any) -> HTMLResponse:
    with site.sessions.begin() as session:
        summary = campaign_summary(session, campaign_id, now=site.now())
        if summary is None:
            raise AdminPageError(404, "No such campaign", f"There is no campaign with id {campaign_id}. It may have been deleted.")
        campaign = summary.campaign
        defaults = {"mode": "now", "day": "", "at": "09:00", "zone": "UTC"}
        # A draft with nothing in the ledger is deleted, not cancelled; one with test sends (its
        # progress leaves them out) is kept as their record: it can only be cancelled.
        deletable = campaign.status == CampaignStatus.DRAFT and ledger_rows_of(session, campaign_id) == 0
        return admin_page(
            site, request, "campaign.html", actor=actor, status=status, summary=summary, campaign=campaign,
            deletable=deletable,
            progress=summary.progress, audience=audience_of(campaign).describe(), can_edit=actor.may(AdminRole.EDITOR),
            editable=campaign.status in EDITABLE, notice=_notice(request), zones=COMMON_ZONES,
            schedule_form=context.pop("schedule_form", defaults), schedule_error=context.pop("schedule_error", ""),
            **context,
        )  # fmt: skip


@router.get("/admin/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_detail(campaign_id: int, request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    return detail_page(site, request, actor, campaign_id)
