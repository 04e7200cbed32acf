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
from sqlalchemy import func, select

from course.clock import get_clock
from course.delivery.compose import Composer, Recipient, lesson_content
from course.delivery.links import TEST_MAIL_PATHS, LinkPurpose
from course.ledger import CampaignContent, read_campaign
from course.models import CampaignTestSend, Delivery, DeliveryKind, DeliveryState, Lesson, Subscriber
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


@router.get("/view/{token}", response_class=HTMLResponse)
def view_in_browser(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """A sent lesson or newsletter as the recipient got it: the HTML part of the composed message."""
    (delivery_id,) = ids_from(site.read_link(LinkPurpose.VIEW, token), required=1)
    composer = Composer(site.settings, renderer=site.renderer, signer=site.signer, clock=get_clock(site.settings))
    with site.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.state != DeliveryState.SENT:
            raise PageError(404, N_("Nothing to show"), N_("This email is not available to view any more."))
        subscriber = session.get(Subscriber, delivery.subscriber_id)
        assert subscriber is not None  # the foreign key cascades
        # Nobody's name or address (a newsletter's merge tags included): whoever holds the link may
        # not be the reader.
        recipient = Recipient(delivery.id, subscriber.id, "", "")
        account_links = site.settings.base_url.rstrip("/") + ACCOUNT_LINKS_PATH
        if delivery.kind == DeliveryKind.LESSON and delivery.lesson_id is not None:
            lesson = session.get(Lesson, delivery.lesson_id)
            assert lesson is not None
            lesson_count = session.scalar(
                select(func.count()).where(Lesson.course_id == lesson.course_id, Lesson.retired_at.is_(None))
            )
            composed = composer.lesson(
                recipient, lesson_content(lesson, lesson_count=lesson_count), account_links_to=account_links
            )
        elif delivery.kind == DeliveryKind.CAMPAIGN and delivery.campaign_id is not None:
            read = read_campaign(session, delivery.campaign_id, subscriber_ids=[subscriber.id])
            assert read is not None  # the foreign key cascades
            campaign = read.campaigns[delivery.campaign_id]
            composed = composer.campaign(
                recipient, campaign, account_links_to=account_links, lesson_number=read.lesson_number(campaign, subscriber.id)
            )
        elif delivery.kind == DeliveryKind.CAMPAIGN_TEST and delivery.test_address:
            shown = session.get(CampaignTestSend, delivery.id)
            if shown is None:  # queued before test sends kept their content (migration 0014)
                raise PageError(404, N_("Nothing to show"), N_("This email is not available to view any more."))
            content = CampaignContent(
                delivery.test_campaign_id or 0, shown.name, shown.subject, shown.body_markdown,
                shown.sender_name, shown.sender_email, False, shown.preheader,
            )
            composed = composer.campaign_test(recipient, content, delivery.test_address)
        else:
            raise PageError(404, N_("Nothing to show"), N_("Only lessons and newsletters can be viewed in a browser."))
    response = HTMLResponse(composed.email.html, headers={"cache-control": "no-store", "x-robots-tag": "noindex"})
    response.headers["content-security-policy"] = EMAIL_VIEW_CSP
    return response
