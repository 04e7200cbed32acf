"""Issue 28: lessons of a Japanese, an Arabic and a code-heavy article (tests/content/data/scripts/)
rendered as emails: the Arabic title and body marked right to left in both parts, and in Chromium
at 600 and 375 px nothing overflows and axe-core finds no serious problem. Screenshots land in
COURSE_TEST_ARTEFACTS (or pytest's tmp folder)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from course.content.article import load_article
from course.content.lesson_body import LessonBody
from course.content.split import split_article
from course.delivery.render import RIGHT_TO_LEFT_MARK, Renderer, greeting_for
from course.settings import PROJECT_ROOT
from tests.support.browser import chromium, serious_axe_violations

SCRIPTS = Path(__file__).resolve().parent.parent / "content" / "data" / "scripts"
ARTICLES = {"ja": "ja-miso.txt", "ar": "ar-bread.html", "code": "en-tutorial.md"}


def rendered(name: str, lesson_number: int = 2, target: int = 150):  # type: ignore[no-untyped-def]
    plans = split_article(load_article(SCRIPTS / ARTICLES[name]), target)
    plan = plans[min(lesson_number, len(plans)) - 1]
    lesson = SimpleNamespace(
        position=lesson_number, lesson_count=len(plans), title=plan.title, reading_minutes=plan.reading_minutes,
        body=LessonBody(plan.shown).to_json(),
    )
    template = Renderer(PROJECT_ROOT / "templates").lesson_template(course=SimpleNamespace(title="Kitchen Basics", language="en"), lesson=lesson)
    return plan, template.fill(
        {"greeting": greeting_for("Ann", "en"), "view_url": "https://x.example/v", "preferences_url": "https://x.example/p", "unsubscribe_url": "https://x.example/u"}
    )


def test_an_arabic_lesson_is_right_to_left_in_both_parts() -> None:
    plan, message = rendered("ar")
    assert '<h1 dir="rtl"' in message.html and '<div class="rtl" dir="rtl">' in message.html
    title_line = next(line for line in message.text.split("\n") if plan.title in line)
    assert title_line.startswith(RIGHT_TO_LEFT_MARK)
    body_lines = [line for line in message.text.split("\n") if any("\u0600" <= char <= "\u06ff" for char in line)]
    assert body_lines and all(line.startswith(RIGHT_TO_LEFT_MARK) for line in body_lines)


def test_a_left_to_right_lesson_has_no_direction_marks() -> None:
    _, message = rendered("ja")
    assert 'dir="rtl"' not in message.html and RIGHT_TO_LEFT_MARK not in message.text


@pytest.mark.browser
@pytest.mark.parametrize("name", list(ARTICLES))
def test_script_lessons_fit_at_600_and_375_px(tmp_path: Path, artefacts: Path, name: str) -> None:
    _, message = rendered(name)
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(message.html, encoding="utf-8")
    (artefacts / f"lesson-{name}.txt").write_text(message.text, encoding="utf-8")
    with chromium() as browser:
        for width in (600, 375):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=artefacts / f"lesson-{name}-{width}.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            if name == "ar":
                assert page.evaluate("getComputedStyle(document.querySelector('h1')).direction") == "rtl"
            serious = serious_axe_violations(page, f"lesson-{name}@{width}")
            assert not serious, serious
            page.close()
