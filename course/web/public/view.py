""""View in browser": a sent lesson or newsletter as its recipient got it, built by the same
composer as the message the sender sent (course.delivery.compose), less the reader's account.

A view link never expires and is the link readers forward, so its page carries nothing of the
reader's account: no name in the greeting, and the email's preferences and unsubscribe links point
to a page that says to use the links in the email itself (those work only for the reader it was
sent to, and a preference link expires)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from course.clock import get_clock
from course.delivery.compose import Composer, Recipient, lesson_content
from course.delivery.links import LinkPurpose
from course.ledger import read_campaign
from course.models import Delivery, DeliveryKind, DeliveryState, Lesson, Subscriber
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
        else:
            raise PageError(404, N_("Nothing to show"), N_("Only lessons and newsletters can be viewed in a browser."))
    response = HTMLResponse(composed.email.html, headers={"cache-control": "no-store", "x-robots-tag": "noindex"})
    response.headers["content-security-policy"] = EMAIL_VIEW_CSP
    return response
