""""View in browser": a sent lesson or newsletter as its recipient got it, built by the same
composer as the message the sender sent (course.delivery.compose), less the reader's account.

A view link never expires and is the link readers forward, so its page carries nothing of the
reader's account: no name in the greeting, and the email's preferences and unsubscribe links point
to a page that says to use the links in the email itself (those work only for the reader it was
sent to, and a preference link expires).

A test send is shown as it was sent (its content when the test was asked for), and its preference
and unsubscribe links, List-Unsubscribe's one-click POST included, lead to the test-mail pages
here: they say what the link does in the real mail and change nothing."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from course.clock import get_clock
from course.delivery.compose import Composer, NothingToCompose
from course.delivery.links import TEST_MAIL_PATHS, LinkPurpose
from course.ledger import read_batch
from course.models import Delivery, DeliveryKind, DeliveryState
from course.web.public.forms import SiteDep
from course.web.security import EMAIL_VIEW_CSP
from course.i18n import N_
from course.web.site import PageError, ids_from

router = APIRouter(include_in_schema=False)

ACCOUNT_LINKS_PATH = "/links-in-your-email"


@router.get(ACCOUNT_LINKS_PATH, response_class=HTMLResponse)
def account_links_help(request: Request, site: SiteDep) -> HTMLResponse:
    """Where the account links of a page seen in the browser lead."""
    return site.page(
        request,
        "message.html",
        title="Use the links in your email",
        message=(
            "This copy of the email is for reading only, so it can be shared. To change your "
            "preferences or to unsubscribe, use the links at the bottom of the email itself."
        ),
    )


# What each account link of a test send does in the mail readers get.
_TEST_LINKS = {
    LinkPurpose.UNSUBSCRIBE: (
        "This unsubscribe link is from a test email",
        "In the newsletter readers get, this link unsubscribes the reader it was sent to from every "
        "newsletter, after one click on a button (mail apps' own unsubscribe button does it at once). "
        "This is a test email, so nothing was changed and nobody was unsubscribed.",
    ),
    LinkPurpose.PREFERENCES: (
        "This preferences link is from a test email",
        "In the newsletter readers get, this link opens the reader's own preferences: the courses they "
        "take, when lessons arrive, pausing and unsubscribing. This is a test email, so it shows no "
        "one's preferences and changes nothing.",
    ),
}


def _test_link_page(purpose: LinkPurpose, request: Request, site: SiteDep) -> HTMLResponse:
    title, message = _TEST_LINKS[purpose]
    response = site.page(request, "message.html", title=title, message=message)
    response.headers["x-robots-tag"] = "noindex"
    return response


@router.get(TEST_MAIL_PATHS[LinkPurpose.UNSUBSCRIBE], response_class=HTMLResponse)
def test_mail_unsubscribe(request: Request, site: SiteDep) -> HTMLResponse:
    """A test send's unsubscribe link: says what it does in the real mail, changes nothing."""
    return _test_link_page(LinkPurpose.UNSUBSCRIBE, request, site)


@router.post(TEST_MAIL_PATHS[LinkPurpose.UNSUBSCRIBE], response_class=HTMLResponse)
def test_mail_one_click(request: Request, site: SiteDep) -> HTMLResponse:
    """A test send's List-Unsubscribe one-click POST (RFC 8058): answered as the real one is, and
    changes nothing. No CSRF token: there is nothing to protect, and providers post without one."""
    return _test_link_page(LinkPurpose.UNSUBSCRIBE, request, site)


@router.get(TEST_MAIL_PATHS[LinkPurpose.PREFERENCES], response_class=HTMLResponse)
def test_mail_preferences(request: Request, site: SiteDep) -> HTMLResponse:
    """A test send's preferences link: says what it does in the real mail, changes nothing."""
    return _test_link_page(LinkPurpose.PREFERENCES, request, site)


# What the page shows: what readers get to read (account mail and invitations are not for sharing).
VIEWABLE = (DeliveryKind.LESSON, DeliveryKind.CAMPAIGN, DeliveryKind.CAMPAIGN_TEST, DeliveryKind.LESSON_TEST)


@router.get("/view/{token}", response_class=HTMLResponse)
def view_in_browser(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """A sent lesson or newsletter as the recipient got it: the HTML part of the composed message,
    read and composed as the sender does (course.ledger.read_batch, Composer.delivery)."""
    (delivery_id,) = ids_from(site.read_link(LinkPurpose.VIEW, token), required=1)
    composer = Composer(site.settings, renderer=site.renderer, signer=site.signer, clock=get_clock(site.settings))
    with site.sessions.begin() as session:
        state = session.scalar(select(Delivery.state).where(Delivery.id == delivery_id))
        if state != DeliveryState.SENT:
            raise PageError(404, N_("Nothing to show"), N_("This email is not available to view any more."))
        batch = read_batch(session, [delivery_id])
    (job,) = batch.jobs
    if job.kind not in VIEWABLE:
        raise PageError(404, N_("Nothing to show"), N_("Only lessons and newsletters can be viewed in a browser."))
    if job.kind == DeliveryKind.CAMPAIGN_TEST and job.delivery_id not in batch.campaign_tests:
        # Queued before test sends kept their content (migration 0014): what it showed is gone.
        raise PageError(404, N_("Nothing to show"), N_("This email is not available to view any more."))
    # Nobody's name or address (a newsletter's merge tags included): whoever holds the link may not
    # be the reader.
    try:
        composed = composer.delivery(job, batch, in_browser=site.settings.base_url.rstrip("/") + ACCOUNT_LINKS_PATH)
    except NothingToCompose:
        raise PageError(404, N_("Nothing to show"), N_("This email is not available to view any more.")) from None
    response = HTMLResponse(composed.email.html, headers={"cache-control": "no-store", "x-robots-tag": "noindex"})
    response.headers["content-security-policy"] = EMAIL_VIEW_CSP
    return response
