"""A campaign as one reader would get it, without sending it: the admin's preview of a saved
campaign and the live preview of a draft being typed. The same composer as the sender, with the
reader's name and merge values; its preference and unsubscribe links lead to the pages that say
what they do and act on nobody (an admin's click must not unsubscribe the reader it shows), and
the view-in-browser link, tied to a delivery, is left unusable (there is none yet). Reads only."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from course.audience.enrollment import find_subscriber
from course.campaigns.audience import Audience, recipients, resolve_course
from course.campaigns.service import Draft, audience_of
from course.delivery.compose import ComposedEmail, Composer, Recipient, campaign_content
from course.ledger import CampaignContent, course_merge_values
from course.models import Campaign, Subscriber

SAMPLE_READERS = 8  # the audience's first few, offered as "preview as"
STAND_IN = Recipient(delivery_id=0, subscriber_id=0, name="Sample Reader", email="reader@example.org")


@dataclass(frozen=True)
class Preview:
    composed: ComposedEmail
    note: str  # why someone else stands in for the subscriber asked for (else empty)
    samples: list[Subscriber]  # the audience's first readers


def preview_campaign(
    session: Session, composer: Composer, content: CampaignContent, audience: Audience, subscriber: str
) -> Preview:
    """`content` composed for `subscriber` (an address). Without one, or with one that is not a
    subscriber, the audience's first subscriber stands in (or a sample reader, for an audience of
    nobody yet), and the note says so."""
    wanted = subscriber.strip()[:320]
    first = recipients(audience, resolve_course(session, audience)).order_by(Subscriber.id).limit(SAMPLE_READERS)
    samples = list(session.scalars(select(Subscriber).where(Subscriber.id.in_(first)).order_by(Subscriber.id)))
    chosen = find_subscriber(session, wanted) if wanted else None
    note = ""
    if wanted and chosen is None:
        note = f"No subscriber has the address {wanted}: shown as {samples[0].email if samples else 'a sample reader'} instead."
    chosen = chosen or (samples[0] if samples else None)
    recipient = Recipient.of_subscriber(chosen, delivery_id=0) if chosen is not None else STAND_IN
    lesson_number = None
    read = course_merge_values(session, audience.course, [recipient.subscriber_id] if chosen is not None else [])
    if read is not None:
        course, lesson_numbers = read
        content = replace(content, course_id=course.id, course_title=course.title)
        lesson_number = lesson_numbers.get(recipient.subscriber_id)
    return Preview(composer.campaign(recipient, content, lesson_number=lesson_number, preview=True), note, samples)


def campaign_preview(session: Session, composer: Composer, campaign_id: int, subscriber: str) -> tuple[Campaign, Preview] | None:
    """The saved campaign composed as `subscriber` would get it, with the campaign (detached from
    the session, for the page around it). None: no such campaign. The admin's preview page, its
    frame and the API's preview all show this."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    preview = preview_campaign(session, composer, campaign_content(campaign), audience_of(campaign), subscriber)
    session.expunge(campaign)
    return campaign, preview


def draft_preview_of(session: Session, composer: Composer, draft: Draft, subscriber: str) -> Preview:
    """A draft as typed, unsaved, composed for `subscriber` (the composer's live preview)."""
    content = CampaignContent(
        0, draft.name, draft.subject, draft.body_markdown, draft.sender.name, draft.sender.email, False, draft.preheader
    )
    return preview_campaign(session, composer, content, draft.audience, subscriber)
