"""Course definition files and course plans, on the shipped content and on broken definitions."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from course.content.article import load_article
from course.content.blocks import inline_texts, join_pieces
from course.content.definition import (
    CourseDefinitionError,
    load_course_definition,
    load_course_definitions,
    plan_course,
)
from course.content.guides import GuideCatalogue, load_guides
from course.content.split import DEFAULT_TARGET_WORDS
from course.settings import PROJECT_ROOT

CONTENT_DIR = PROJECT_ROOT / "content"

MINIMAL = """\
title = "Bread"
articles = ["articles/a.md"]
sender_name = "The Bread Letter"
sender_email = "lessons@example.com"
"""


def make_content(tmp_path: Path, course_toml: str, slug: str = "bread") -> Path:
    """A content directory with one article and one course file; returns the course file's path."""
    (tmp_path / "articles").mkdir(exist_ok=True)
    (tmp_path / "articles" / "a.md").write_text("# A\n\nOne paragraph.\n\n## Next\n\nAnother.\n", encoding="utf-8")
    (tmp_path / "courses").mkdir(exist_ok=True)
    course_path = tmp_path / "courses" / f"{slug}.toml"
    course_path.write_text(course_toml, encoding="utf-8")
    return course_path


# --- shipped content -----------------------------------------------------------------------------------------


def test_shipped_course_definition() -> None:
    [definition] = load_course_definitions(CONTENT_DIR)
    assert definition.slug == "sourdough-from-scratch"
    assert definition.weekdays == frozenset({0, 1, 2, 3, 4})
    assert definition.send_time == datetime.time(9, 0)
    assert definition.days_between_lessons == 1
    assert definition.sender_email == "lessons@example.com"
    assert [path.name for path in definition.articles] == ["starter.md", "first-loaf.md"]
    assert all(path.is_absolute() and path.is_file() for path in definition.articles)


def test_plan_of_shipped_course_links_every_reference() -> None:
    [definition] = load_course_definitions(CONTENT_DIR)
    catalogue = load_guides(CONTENT_DIR / "guides.toml")
    plan = plan_course(definition, catalogue)

    assert plan.unmatched_references == ()
    assert [lesson.position for lesson in plan.lessons] == list(range(1, len(plan.lessons) + 1))
    # Lessons follow the articles in order and carry all their blocks.
    for article_path in definition.articles:
        article = load_article(article_path)
        lessons = [lesson for lesson in plan.lessons if lesson.article_source == article.source]
        assert len(lessons) >= 2
        assert join_pieces(block for lesson in lessons for block in lesson.plan.body) == list(article.blocks)
    sources = [lesson.article_source for lesson in plan.lessons]
    assert sources == sorted(sources, key=[str(path) for path in definition.articles].index)
    # Each article points to guides, and each matched reference is a link in the body shown.
    linked_keys = set()
    for lesson in plan.lessons:
        shown = " ".join(inline_texts(lesson.body))
        for reference in lesson.found:
            assert reference.guide is not None
            assert f"]({reference.guide.url})" in shown
            linked_keys.add(reference.guide.key)
        # The body is what the plan shows, the title's heading left out, links apart.
        assert [block.kind for block in lesson.body] == [block.kind for block in lesson.plan.shown]
    assert len(linked_keys) >= 4


def test_plan_reports_unmatched_references(tmp_path: Path) -> None:
    course_path = make_content(tmp_path, MINIMAL)
    (tmp_path / "articles" / "a.md").write_text("# A\n\nSee our guide on knitting socks.\n", encoding="utf-8")
    plan = plan_course(load_course_definition(course_path), GuideCatalogue(()))
    assert [reference.text for reference in plan.unmatched_references] == ["our guide on knitting socks"]


# --- defaults and accepted forms ----------------------------------------------------------------------------


def test_minimal_definition_gets_defaults(tmp_path: Path) -> None:
    definition = load_course_definition(make_content(tmp_path, MINIMAL))
    assert definition.slug == "bread"
    assert definition.description == ""
    assert definition.articles == ((tmp_path / "articles" / "a.md").resolve(),)
    assert definition.days_between_lessons == 1
    assert definition.send_time == datetime.time(9, 0)
    assert definition.weekdays == frozenset(range(7))
    assert definition.target_words == DEFAULT_TARGET_WORDS


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('weekdays = "weekdays"', frozenset(range(5))),
        ('weekdays = "everyday"', frozenset(range(7))),
        ('weekdays = ["Sat", "sunday"]', frozenset({5, 6})),
    ],
)
def test_weekday_forms(tmp_path: Path, line: str, expected: frozenset[int]) -> None:
    assert load_course_definition(make_content(tmp_path, MINIMAL + line + "\n")).weekdays == expected


@pytest.mark.parametrize(("line", "expected"), [('send_time = "07:05"', (7, 5)), ("send_time = 18:30:00", (18, 30))])
def test_send_time_forms(tmp_path: Path, line: str, expected: tuple[int, int]) -> None:
    assert load_course_definition(make_content(tmp_path, MINIMAL + line + "\n")).send_time == datetime.time(*expected)


def test_definitions_are_sorted_by_slug(tmp_path: Path) -> None:
    make_content(tmp_path, MINIMAL, slug="zucchini-bread")
    make_content(tmp_path, MINIMAL, slug="apple-cake")
    assert [definition.slug for definition in load_course_definitions(tmp_path)] == ["apple-cake", "zucchini-bread"]


def test_content_dir_without_courses_has_none(tmp_path: Path) -> None:
    assert load_course_definitions(tmp_path) == []


# --- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "key"),
    [
        (MINIMAL.replace('title = "Bread"\n', ""), "title"),
        (MINIMAL.replace('"Bread"', '"Bread\\r\\nBcc: everyone@example.com"'), "title"),
        (MINIMAL.replace('"The Bread Letter"', '"Bread\\nBcc: x@example.com"'), "sender_name"),
        (MINIMAL.replace("lessons@example.com", "lessons@example.com\\r\\nBcc: x@example.com"), "sender_email"),
        (MINIMAL.replace("lessons@example.com", "not-an-address"), "sender_email"),
        (MINIMAL.replace("lessons@example.com", "a b@example.com"), "sender_email"),
        (MINIMAL + 'send_time = "9am"\n', "send_time"),
        (MINIMAL + 'send_time = "24:00"\n', "send_time"),
        (MINIMAL + 'weekdays = ["mon", "funday"]\n', "weekdays"),
        (MINIMAL + "weekdays = []\n", "weekdays"),
        (MINIMAL + 'weekdays = "sometimes"\n', "weekdays"),
        (MINIMAL + "days_between_lessons = 0\n", "days_between_lessons"),
        (MINIMAL + "days_between_lessons = true\n", "days_between_lessons"),
        (MINIMAL + 'target_words = "300"\n', "target_words"),
        (MINIMAL.replace('["articles/a.md"]', '["articles/missing.md"]'), "articles"),
        (MINIMAL.replace('["articles/a.md"]', '["../outside.md"]'), "articles"),
        (MINIMAL.replace('["articles/a.md"]', '["articles/a.md", "articles/a.md"]'), "articles"),
        (MINIMAL.replace('["articles/a.md"]', "[]"), "articles"),
        (MINIMAL + 'send_tme = "09:00"\n', "send_tme"),
        (MINIMAL + "title = \n", "invalid TOML"),
        (MINIMAL + 'language = "xx"\n', "language"),
        (MINIMAL + "language = 7\n", "language"),
    ],
)
def test_invalid_definition_names_file_and_key(tmp_path: Path, content: str, key: str) -> None:
    course_path = make_content(tmp_path, content)
    with pytest.raises(CourseDefinitionError) as raised:
        load_course_definition(course_path)
    assert str(course_path) in str(raised.value)
    assert key in str(raised.value)


def test_language_defaults_to_english_and_accepts_the_shipped_ones(tmp_path: Path) -> None:
    assert load_course_definition(make_content(tmp_path, MINIMAL)).language == "en"
    for language in ("de", "fr", "DE"):
        course_path = make_content(tmp_path, MINIMAL + f'language = "{language}"\n')
        assert load_course_definition(course_path).language == language.lower()


def test_invalid_slug_is_rejected(tmp_path: Path) -> None:
    course_path = make_content(tmp_path, MINIMAL, slug="Bread_Course")
    with pytest.raises(CourseDefinitionError, match="slug 'Bread_Course'"):
        load_course_definition(course_path)
