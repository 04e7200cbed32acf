"""The campaign pages: the list with status and counts, and one campaign's detail. Read-only for
every role; composing and scheduling come with the campaign editor."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from course.campaigns.progress import campaign_summaries, campaign_summary, status_counts
from course.models import CampaignStatus
from course.web.admin.auth import AdminPageError, SiteDep, ViewerPage
from course.web.admin.views import admin_page

router = APIRouter(include_in_schema=False)

STATUS_FILTERS = ("", *[status.value for status in CampaignStatus])


@router.get("/admin/campaigns", response_class=HTMLResponse)
def campaign_list(request: Request, site: SiteDep, actor: ViewerPage, status: str = "") -> HTMLResponse:
    chosen = status if status in STATUS_FILTERS else ""
    with site.sessions.begin() as session:
        summaries = campaign_summaries(session, now=site.now(), status=chosen or None)
        by_status = status_counts(session)
        return admin_page(
            site, request, "campaigns.html", actor=actor, summaries=summaries, by_status=by_status,
            status_filter=chosen, statuses=[s.value for s in CampaignStatus], total=sum(by_status.values()),
        )  # fmt: skip


@router.get("/admin/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_detail(campaign_id: int, request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    with site.sessions.begin() as session:
        summary = campaign_summary(session, campaign_id, now=site.now())
        if summary is None:
            raise AdminPageError(404, "No such campaign", f"There is no campaign with id {campaign_id}. It may have been deleted.")
        return admin_page(site, request, "campaign.html", actor=actor, summary=summary, campaign=summary.campaign, progress=summary.progress)
