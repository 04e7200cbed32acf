""""View in browser": a sent lesson or newsletter as its recipient got it.

Moved verbatim from the old pages module; the delivery composer (issue #9, part B) replaces the
rendering here, so that the sender, this page and the benchmark build a message one way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from course.delivery.links import LinkPurpose
from course.delivery.render import greeting_for
from course.i18n import DEFAULT_LANGUAGE
from course.models import Campaign, Delivery, DeliveryKind, DeliveryState, Lesson, Subscriber
from course.web.public.forms import SiteDep
from course.web.security import EMAIL_VIEW_CSP
from course.web.site import PageError, ids_from

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class LessonForView:
    """What Renderer.lesson_template reads from a lesson."""

    position: int
    lesson_count: int
    title: str
    reading_minutes: int
    body: dict[str, Any]


@router.get("/view/{token}", response_class=HTMLResponse)
def view_in_browser(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """A sent lesson or newsletter as the recipient got it, rendered again with course.render."""
    (delivery_id,) = ids_from(site.read_link(LinkPurpose.VIEW, token), required=1)
    with site.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.state != DeliveryState.SENT:
            raise PageError(404, "Nothing to show", "This email is not available to view any more.")
        subscriber = session.get(Subscriber, delivery.subscriber_id)
        assert subscriber is not None  # the foreign key cascades
        if delivery.kind == DeliveryKind.LESSON and delivery.lesson_id is not None:
            lesson = session.get(Lesson, delivery.lesson_id)
            assert lesson is not None
            course = lesson.course
            lesson_count = session.scalar(
                select(func.count()).where(Lesson.course_id == course.id, Lesson.retired_at.is_(None))
            )
            template = site.renderer.lesson_template(
                course=course,
                lesson=LessonForView(
                    lesson.position, lesson_count or lesson.position, lesson.title, lesson.reading_minutes, lesson.body
                ),
            )
            unsubscribe_payload: tuple[int, int | None] = (subscriber.id, course.id)
            language = course.language
        elif delivery.kind == DeliveryKind.CAMPAIGN and delivery.campaign_id is not None:
            campaign = session.get(Campaign, delivery.campaign_id)
            assert campaign is not None
            template = site.renderer.campaign_template(
                subject=campaign.subject, body_markdown=campaign.body_markdown, sender_name=campaign.sender_name
            )
            unsubscribe_payload = (subscriber.id, None)
            language = DEFAULT_LANGUAGE
        else:
            raise PageError(404, "Nothing to show", "Only lessons and newsletters can be viewed in a browser.")
        email = template.fill(
            {
                "greeting": greeting_for(subscriber.name, language),
                "view_url": site.signer.url(LinkPurpose.VIEW, delivery.id),
                "preferences_url": site.signer.url(LinkPurpose.PREFERENCES, subscriber.id),
                "unsubscribe_url": site.signer.url(LinkPurpose.UNSUBSCRIBE, *unsubscribe_payload),
            }
        )
    response = HTMLResponse(email.html, headers={"cache-control": "no-store", "x-robots-tag": "noindex"})
    response.headers["content-security-policy"] = EMAIL_VIEW_CSP
    return response

