"""The composer: each kind of delivery (lesson, newsletter, account mail) becomes the right message,
with links signed for the right recipient and scope, each template rendered once per batch. Pure:
no database, no server."""

from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from course.clock import ManualClock, set_wall_clock
from course.content.blocks import Heading, Paragraph
from course.content.lesson_body import LessonBody, LessonBodyError
from course.delivery.compose import (
    Composer,
    NothingToCompose,
    Recipient,
    TemplateCache,
    campaign_content,
    lesson_content,
)
from course.delivery.links import LinkPurpose, Signer
from course.delivery.render import Renderer
from course.ledger import Batch, CampaignContent, CourseHeader, DeliveryJob, LessonContent, message_ids_from_secret
from course.models import Campaign, Course, DeliveryKind, Lesson
from course.settings import PROJECT_ROOT, Settings

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc)
# Stamped by the tests' fixed NOW, as a composer built from settings with that clock stamps its links.
SIGNER = Signer(secret="test-secret", base_url="https://courses.example.org", now=lambda: NOW.timestamp())
COURSE = CourseHeader(7, "bread", "Bread at Home", "The Letter", "lessons@example.com")
BODY = LessonBody(blocks=(Heading("Flour", 2), Paragraph("Use strong flour."))).to_json()
LESSON = LessonContent(11, COURSE, 2, 5, "Flour first", BODY, 3, False)
CAMPAIGN = CampaignContent(21, "nov", "November news", "Some **news**.", "The Paper", "news@example.com", False)
ANN = Recipient(delivery_id=101, subscriber_id=5, name="Ann Lee", email="ann@example.org")
BEN = Recipient(delivery_id=102, subscriber_id=6, name="", email="ben@example.org")


@pytest.fixture
def composer() -> Composer:
    settings = Settings(secret_key="test-secret", base_url="https://courses.example.org", list_id_domain="course.test")
    return Composer(settings, renderer=Renderer(PROJECT_ROOT / "templates"), signer=SIGNER, clock=ManualClock(NOW))


def parsed(message_bytes: bytes) -> EmailMessage:
    return message_from_bytes(message_bytes, policy=policy.default)  # type: ignore[return-value]


def link_payload(purpose: LinkPurpose, url: str) -> list[object]:
    return SIGNER.read(purpose, url.rsplit("/", 1)[1])


def test_a_lesson_becomes_its_course_email(composer: Composer) -> None:
    composed = composer.lesson(ANN, LESSON)
    assert composed.envelope_from == "lessons@example.com"
    assert composed.email.subject == "Lesson 2 of 5: Flour first"
    assert "Hi Ann," in composed.email.text and "Use strong flour." in composed.email.html
    mail = parsed(composed.message_bytes())
    assert mail["to"] == "Ann Lee <ann@example.org>"
    assert mail["from"] == "The Letter <lessons@example.com>"
    assert mail["message-id"] == message_ids_from_secret("course.test", "test-secret").for_delivery(101)
    assert mail["list-id"] == "Bread at Home <bread.course.test>"
    assert link_payload(LinkPurpose.UNSUBSCRIBE, composed.message.unsubscribe_url) == [5, 7]  # this course only
    view_url = SIGNER.url(LinkPurpose.VIEW, 101)
    assert view_url in composed.email.text
    assert SIGNER.url(LinkPurpose.PREFERENCES, 5) in composed.email.text


def test_a_newsletter_unsubscribes_from_everything(composer: Composer) -> None:
    composed = composer.campaign(BEN, CAMPAIGN)
    assert composed.envelope_from == "news@example.com"
    assert composed.email.subject == "November news"
    assert "Hi there," in composed.email.text and "<strong>news</strong>" in composed.email.html
    assert link_payload(LinkPurpose.UNSUBSCRIBE, composed.message.unsubscribe_url) == [6, None]
    assert parsed(composed.message_bytes())["list-id"] == "The Paper <newsletter.course.test>"


NEWSLETTER = """Three things this month:

1. The **spring course** opens on Monday.
2. A new guide: [shaping a loaf](https://example.com/shaping).

> Bread is a conversation between flour and time.

| Month | Topic |
|:------|------:|
| March | Starters |

```
feed 1:1:1 at 9 and 21
    (keep the indent)
```

<table><tr><th>Day</th><th>Bake</th></tr><tr><td>Fri</td><td>Rye</td></tr></table>

![A finished loaf](https://example.com/loaf.jpg)
"""


def test_a_newsletter_is_read_into_blocks_like_a_lesson(composer: Composer) -> None:
    """Both parts of a newsletter come from the lessons' blocks: the text part has numbered items,
    "> " quotes, aligned tables, code verbatim and links as "text (url)", not raw Markdown."""
    composed = composer.campaign(BEN, CampaignContent(22, "mar", "March", NEWSLETTER, "The Paper", "news@example.com", False))
    text, html = composed.email.text, composed.email.html
    for line in [
        "1. The spring course opens on Monday.",
        "2. A new guide: shaping a loaf (https://example.com/shaping).",
        "> Bread is a conversation between flour and time.",
        "Month     Topic",
        "March  Starters",
        "feed 1:1:1 at 9 and 21\n    (keep the indent)",
        "Day  Bake\n---  ----\nFri  Rye",  # the raw HTML table, too
        "[Image: A finished loaf] https://example.com/loaf.jpg",
    ]:
        assert line in text, line
    assert "**" not in text and "```" not in text and "](" not in text and "|" not in text
    assert '<ol class="list"' in html and "<blockquote" in html and html.count("<table") == 2
    assert '<pre class="code"' in html and 'rel="noopener noreferrer"' in html and "max-width: 544px" in html
    assert "border-left: 3px" in html and "white-space: pre-wrap" in html  # the lessons' styles reach the newsletter (inlined from the template)


def test_a_newsletter_body_the_reader_refuses_is_sent_as_before(composer: Composer) -> None:
    """A body saved before the editor checked fences (the editor refuses this one now) still sends."""
    body = "Before.\n\n```\nnever closed"
    composed = composer.campaign(BEN, CampaignContent(23, "old", "Old", body, "The Paper", "news@example.com", False))
    assert "never closed" in composed.email.text and "never closed" in composed.email.html


def test_account_mail_carries_its_signed_action_link(composer: Composer) -> None:
    composed = composer.account_mail(ANN, "confirm", COURSE)
    assert composed.email.subject == "Please confirm your place in Bread at Home"
    confirm_url = SIGNER.url(LinkPurpose.CONFIRM, 5, 7, 101)  # it names its own mail, so its own signup
    assert confirm_url in composed.email.text
    assert composed.message.list_id == ""
    with pytest.raises(NothingToCompose, match="no account mail named 'welcome'"):
        composer.account_mail(ANN, "welcome", COURSE)


def test_one_template_per_lesson_per_batch(composer: Composer) -> None:
    templates = TemplateCache()
    first = composer.lesson(ANN, LESSON, templates)
    second = composer.lesson(BEN, LESSON, templates)
    composer.campaign(ANN, CAMPAIGN, templates)
    assert len(templates) == 2
    assert first.email.subject == second.email.subject and first.email.html != second.email.html  # per-recipient slots
    cached = templates.templates[("lesson", 11)]
    assert composer.lesson(ANN, LESSON, templates).email == cached.fill(
        {
            "greeting": "Hi Ann,",
            "view_url": SIGNER.url(LinkPurpose.VIEW, 101),
            "preferences_url": SIGNER.url(LinkPurpose.PREFERENCES, 5),
            "unsubscribe_url": SIGNER.url(LinkPurpose.UNSUBSCRIBE, 5, 7),
        }
    )


def _job(delivery_id: int, kind: str, **ids: object) -> DeliveryJob:
    values: dict[str, object] = dict(
        delivery_id=delivery_id, kind=kind, template=None, attempts=1, subscriber_id=5, email="ann@example.org",
        name="Ann Lee", subscriber_status="active", enrollment_id=None, enrollment_status=None, course_id=None,
        lesson_id=None, campaign_id=None,
    )
    values.update(ids)
    return DeliveryJob(**values)  # type: ignore[arg-type]


def test_a_delivery_job_is_composed_by_its_kind(composer: Composer) -> None:
    lesson_job = _job(101, DeliveryKind.LESSON, lesson_id=11, course_id=7, enrollment_id=3, enrollment_status="active")
    campaign_job = _job(102, DeliveryKind.CAMPAIGN, campaign_id=21)
    confirm_job = _job(103, DeliveryKind.TRANSACTIONAL, template="confirm", course_id=7)
    batch = Batch(
        jobs=[lesson_job, campaign_job, confirm_job], courses={7: COURSE}, lessons={11: LESSON}, campaigns={21: CAMPAIGN}
    )
    templates = TemplateCache()
    subjects = [composer.delivery(job, batch, templates).email.subject for job in batch.jobs]
    assert subjects == ["Lesson 2 of 5: Flour first", "November news", "Please confirm your place in Bread at Home"]
    assert composer.delivery(lesson_job, batch).email == composer.lesson(Recipient.of_job(lesson_job), LESSON).email
    with pytest.raises(NothingToCompose, match=r"delivery 104 \(transactional, template 'welcome'\) has nothing to send"):
        composer.delivery(_job(104, DeliveryKind.TRANSACTIONAL, template="welcome", course_id=7), batch)
    with pytest.raises(NothingToCompose, match="delivery 105"):
        composer.delivery(_job(105, DeliveryKind.LESSON, lesson_id=999), batch)


def test_stored_rows_compose_as_the_sender_composes_them(composer: Composer) -> None:
    """The view-in-browser page reads ORM rows: the same lesson and newsletter come out."""
    course = Course(id=7, slug="bread", title="Bread at Home", sender_name="The Letter", sender_email="lessons@example.com")
    lesson = Lesson(id=11, course=course, position=2, title="Flour first", body=BODY, reading_minutes=3, retired_at=None)
    campaign = Campaign(
        id=21, name="nov", subject="November news", body_markdown="Some **news**.", sender_name="The Paper",
        sender_email="news@example.com", status="sent",
    )
    assert lesson_content(lesson, lesson_count=5) == LESSON
    assert lesson_content(lesson, lesson_count=None).lesson_count == 2
    assert campaign_content(campaign) == CAMPAIGN
    assert composer.lesson(ANN, lesson_content(lesson, lesson_count=5)).email == composer.lesson(ANN, LESSON).email


def test_a_lesson_body_of_another_shape_is_refused_by_name(composer: Composer) -> None:
    broken = LessonContent(12, COURSE, 3, 5, "Broken", {"blocks": [{"paragraphs": "not a list"}]}, 1, False)
    with pytest.raises(LessonBodyError, match="block 0: 'paragraphs' must be a list"):
        composer.lesson(ANN, broken)


def test_a_composer_from_settings_signs_with_their_secret(composer: Composer) -> None:
    settings = Settings(secret_key="test-secret", base_url="https://courses.example.org", list_id_domain="course.test")
    built = Composer.from_settings(settings, clock=ManualClock(NOW))
    assert (built.signer.secret, built.signer.base_url) == (SIGNER.secret, SIGNER.base_url)
    set_wall_clock(ManualClock(NOW))  # links are stamped in real time (clock.get_wall_clock)
    try:
        assert built.lesson(ANN, LESSON).message == composer.lesson(ANN, LESSON).message
    finally:
        set_wall_clock(None)


def test_a_newsletter_speaks_the_site_language() -> None:
    settings = Settings(secret_key="test-secret", base_url="https://courses.example.org", list_id_domain="course.test", site_language="de")
    composer = Composer(settings, renderer=Renderer(PROJECT_ROOT / "templates"), signer=SIGNER, clock=ManualClock(NOW))
    composed = composer.campaign(ANN, CAMPAIGN)
    assert "Hallo Ann," in composed.email.text and "Abmelden" in composed.email.text
    assert "Einstellungen verwalten" in composed.email.html and composed.email.subject == "November news"


def test_merge_tags_are_filled_per_recipient_in_subject_preheader_and_body(composer: Composer) -> None:
    content = CampaignContent(
        22, "dec", 'News for {{ first_name | default: "you" }}', (
            "Hello {{ first_name | default: \"reader\" }} ({{ email }}), lesson {{ lesson_number }} of {{ course_title }}.\n\n"
            "[Your settings]({{ preferences_url }})"
        ), "The Paper", "news@example.com", False, "Only for {{ email }}", course_id=7, course_title="Bread & Home",
    )  # fmt: skip
    templates = TemplateCache()
    ann = composer.campaign(ANN, content, templates, lesson_number=3)
    ben = composer.campaign(BEN, content, templates)
    assert len(templates) == 1  # rendered once, filled per recipient
    assert ann.email.subject == "News for Ann" and ben.email.subject == "News for you"
    assert parsed(ann.message_bytes())["subject"] == "News for Ann"
    assert "Hello Ann (ann@example.org), lesson 3 of Bread &amp; Home." in ann.email.html
    assert "Only for ann@example.org" in ann.email.html
    assert "Hello reader (ben@example.org), lesson  of Bread & Home." in ben.email.text
    assert f'href="{SIGNER.url(LinkPurpose.PREFERENCES, 5)}"' in ann.email.html
    assert f"Your settings ({SIGNER.url(LinkPurpose.PREFERENCES, 6)})" in ben.email.text
    assert "{{" not in ann.email.html + ann.email.text and "@@" not in ann.email.html + ann.email.text


def test_a_merge_value_cannot_inject_markup(composer: Composer) -> None:
    content = CampaignContent(23, "x", "Hi", 'Hi {{ first_name | default: "you" }}!', "The Paper", "news@example.com", False)
    composed = composer.campaign(Recipient(1, 2, "<b>Eve</b> Smith", "eve@example.org"), content)
    assert "Eve" not in composed.email.html and "Hi you!" in composed.email.html  # markup is no name: the default
    named = composer.campaign(Recipient(1, 2, "O'Brien", "ob@example.org"), content)
    assert "Hi O&#39;Brien!" in named.email.html or "Hi O&#x27;Brien!" in named.email.html


def test_list_mail_carries_a_feedback_id_of_ids_only_and_tests_carry_none(composer: Composer) -> None:
    """Gmail's feedback loop groups complaints by each Feedback-ID field: lesson or campaign,
    course, kind, and the sender id (the List-Id domain); no address, name or subject in it."""
    lesson = parsed(composer.lesson(ANN, LESSON).message_bytes())
    assert lesson["feedback-id"] == "lesson11:course7:lesson:course.test"
    newsletter = parsed(composer.campaign(BEN, CAMPAIGN).message_bytes())
    assert newsletter["feedback-id"] == "campaign21:newsletter:campaign:course.test"
    confirmation = parsed(composer.account_mail(ANN, "confirm", COURSE).message_bytes())
    assert confirmation["feedback-id"] == "confirm:course7:account:course.test"
    for test_send in (composer.lesson_test(ANN, LESSON, "ed@example.com"), composer.campaign_test(BEN, CAMPAIGN, "ed@example.com")):
        assert parsed(test_send.message_bytes())["feedback-id"] is None
