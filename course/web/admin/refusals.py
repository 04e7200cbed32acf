"""The campaign service's refusals as HTTP, in one place for the HTML admin and the JSON API: the
status follows the refusal's type (course.campaigns.refusals), never the words of its message."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from course.campaigns.refusals import (
    AudienceEmpty,
    CampaignNotFound,
    CampaignRefused,
    DraftExists,
    InputRefused,
    StateRefused,
)
from course.web.admin.auth import AdminPageError

# Most specific first: the first type the refusal is an instance of decides.
STATUS: tuple[tuple[type[CampaignRefused], int], ...] = (
    (CampaignNotFound, 404),
    (StateRefused, 409),
    (DraftExists, 409),
    (InputRefused, 400),  # a form page shows these beside their fields instead (422, the form again)
    (AudienceEmpty, 400),
)


def status_of(refusal: CampaignRefused) -> int:
    return next((status for kind, status in STATUS if isinstance(refusal, kind)), 400)


def is_input(refusal: CampaignRefused) -> bool:
    """Refused input (a field, an audience of nobody, a time past): the page's form says so."""
    return status_of(refusal) == 400


def refusal_json(refusal: CampaignRefused) -> JSONResponse:
    return JSONResponse({"detail": str(refusal), "fields": refusal.fields}, status_code=status_of(refusal))


def refusal_page(refusal: CampaignRefused, *, refused: str = "That cannot be done now") -> AdminPageError:
    """A refusal no form can show: the admin's error page (no such campaign, or `refused`: not now)."""
    status = status_of(refusal)
    title = "No such campaign" if status == 404 else refused
    return AdminPageError(status, title, str(refusal).capitalize() + ".")
