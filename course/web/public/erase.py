"""A subscriber erasing their own data (GDPR), confirmed by mail:

1. the preferences page asks for it (course.web.public.preferences, action "erase_request"): an
   urgent account mail through the ledger carries a signed erase link ([subscriber_id, course_id],
   its own salt, erase_link_max_age_hours);
2. the link opens a page with one button (GET changes nothing: mail scanners follow links);
3. its POST (CSRF) runs the same erasure as the owner's (course.audience.erasure.erase).

Every answer is the same whether the link's subscriber still exists, was erased already or never
was: the page says the data is erased, and tells nothing else."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from course.audience.erasure import erase
from course.delivery.links import LinkPurpose
from course.i18n import N_, translate
from course.models import Subscriber
from course.web.public.forms import SiteDep, TextField, csrf_failed
from course.web.security import csrf_is_valid
from course.web.site import Site, ids_from

router = APIRouter(include_in_schema=False)


def _subscriber_id(site: Site, token: str) -> int:
    ids = ids_from(site.read_link(LinkPurpose.ERASE, token), required=1, optional=1)
    assert ids[0] is not None
    return ids[0]


@router.get("/erase/{token}", response_class=HTMLResponse)
def erase_page(token: str, request: Request, site: SiteDep, done: str = "") -> HTMLResponse:
    _subscriber_id(site, token)
    language = site.settings.site_language
    if done:
        return site.page(
            request, "message.html", language=language, title=translate(language, N_("Your data is erased")),
            message=translate(language, N_("We keep nothing about you any more and send you nothing more.")),
        )  # fmt: skip
    return site.page(request, "erase.html", language=language, action=f"/erase/{token}")


@router.post("/erase/{token}")
def erase_submit(token: str, request: Request, site: SiteDep, csrf_token: TextField = "") -> Response:
    subscriber_id = _subscriber_id(site, token)
    if not csrf_is_valid(site.settings.secret_key, request, csrf_token):
        raise csrf_failed()
    with site.sessions.begin() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is not None:
            erase(session, subscriber, secret=site.settings.secret_key, now=site.now())
    return RedirectResponse(f"/erase/{token}?done=1", status_code=303)
