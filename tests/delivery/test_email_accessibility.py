"""Every kind of email, composed by the real Composer (lesson, newsletter, its test send, the
confirmation and the already-enrolled mail, in English and German), opened in Chromium at 1280 and
390 px: axe-core finds no violation at any level, minor to critical (colour contrast and landmarks
included), and nothing is wider than the window. Screenshots land in COURSE_TEST_ARTEFACTS (or pytest's tmp folder)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from course.clock import ManualClock
from course.content.article import parse_article
from course.content.definition import link_lesson
from course.content.guides import Guide, GuideCatalogue
from course.content.lesson_body import LessonBody, StoredReference
from course.content.split import split_article
from course.delivery.compose import Composer, Recipient
from course.delivery.links import Signer
from course.delivery.render import Renderer
from course.ledger import CampaignContent, CourseHeader, LessonContent
from course.settings import PROJECT_ROOT, Settings
from tests.support.browser import VIEWPORTS, axe_violations, chromium

pytestmark = pytest.mark.browser

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc)
ANN = Recipient(delivery_id=101, subscriber_id=5, name="Ann Lee", email="ann@example.org")
CATALOGUE = GuideCatalogue((Guide("starter", "Keeping a Starter", "https://guides.example.com/starter", ("feeding schedule",)),))
ARTICLE = """# The Levain

## Building It

The night before you bake, build a levain from your starter. Our guide to the feeding schedule
explains how often to feed it.

1. Mix 20 g starter, 50 g flour and 50 g water.
2. Leave it covered at room temperature.
   - about 12 hours
   - until it has doubled

> A levain at its peak smells sweet and slightly sour.

| Flour | Water | Starter |
|:------|------:|--------:|
| 50 g  | 50 g  | 20 g    |

```text
peak = doubled + domed + bubbly
```
"""
NEWSLETTER = """# What we baked in October

Three new loaves, one **rye** week, and a question from a reader.

## This month

- A seeded rye, [recipe here](https://example.org/rye)
- Our spelt loaf, *finally* right

> "Can I freeze a starter?" Yes, for a month.

Thanks for reading!
"""


def composed_emails(language: str) -> dict[str, str]:
    """Each kind of email's HTML, as the sender would send it to Ann."""
    # The site's language too: a newsletter's frame speaks it (a lesson's, its course's).
    settings = Settings(secret_key="test-secret", base_url="https://courses.example.org", list_id_domain="course.test", site_language=language)
    signer = Signer(secret="test-secret", base_url=settings.base_url)
    composer = Composer(settings, renderer=Renderer(PROJECT_ROOT / "templates"), signer=signer, clock=ManualClock(NOW))
    course = CourseHeader(7, "bread", "Bread at Home", "The Bakery", "lessons@example.com", language)
    [plan] = split_article(parse_article(ARTICLE, source="levain.md"), 400, language=language)
    blocks, found = link_lesson(plan, CATALOGUE)
    body = LessonBody(blocks, tuple(map(StoredReference.of, found))).to_json()
    lesson = LessonContent(11, course, 3, 6, plan.title, body, plan.reading_minutes, False)
    campaign = CampaignContent(21, "october", "What we baked in October", NEWSLETTER, "The Bakery", "news@example.com", False, "Three new loaves")
    return {
        "lesson": composer.lesson(ANN, lesson).email.html,
        "campaign": composer.campaign(ANN, campaign).email.html,
        "campaign-test": composer.campaign_test(ANN, campaign, "me@example.net").email.html,
        "confirm": composer.account_mail(ANN, "confirm", course).email.html,
        "already-enrolled": composer.account_mail(ANN, "already_enrolled", course).email.html,
        "erase": composer.account_mail(ANN, "erase", course).email.html,
    }


@pytest.mark.parametrize("language", ["en", "de"])
def test_every_email_passes_axe_at_desktop_and_phone_widths(language: str, artefacts: Path) -> None:
    emails = composed_emails(language)
    problems: list[str] = []
    with chromium() as browser:
        for label, viewport in VIEWPORTS.items():
            page = browser.new_page(viewport=viewport)
            for kind, html in emails.items():
                page.set_content(html, wait_until="load")
                name = f"{kind}-{language}@{label}"
                page.screenshot(path=artefacts / f"{kind}-{language}-{label}.png", full_page=True)
                assert page.locator("h1").count() >= 1, f"{name}: no heading"
                assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"{name}: wider than the window"
                problems.extend(axe_violations(page, name))
            page.close()
    assert problems == [], "\n".join(problems)
