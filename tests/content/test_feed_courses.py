"""A blog becomes a course without a first hand-written article (issue #26): a course file may name
its feed (`feed = "https://…"`) instead of articles; it loads with no articles, and the entries that
`course import-feed` adds become its lessons. Without a feed, `articles` is still required."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.audience.course_content import import_content
from course.content.definition import CourseDefinitionError, load_course_definition
from course.content.feeds import load_feed_record, parse_feed, plan_feed_import, write_feed_import
from course.clock import ManualClock
from course.models import Course, Lesson

FEED = Path(__file__).resolve().parent / "data" / "feeds" / "garden-rss.xml"
FEED_ONLY = """\
title = "Garden Notes"
feed = "https://garden.example.org/feed.xml"
sender_name = "Garden"
sender_email = "garden@example.org"
"""


def _content(tmp_path: Path, course_toml: str) -> Path:
    content = tmp_path / "content"
    (content / "courses").mkdir(parents=True)
    (content / "courses" / "garden.toml").write_text(course_toml)
    return content


def test_a_course_starts_from_its_feed_alone(tmp_path: Path, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    content = _content(tmp_path, FEED_ONLY)
    definition = load_course_definition(content / "courses" / "garden.toml")
    assert definition.articles == () and definition.feed == "https://garden.example.org/feed.xml"

    planned = plan_feed_import(parse_feed(FEED.read_bytes(), str(FEED)), "garden", load_feed_record(content, "garden"), str(FEED))
    write_feed_import(content, "garden", [], planned)
    with sessions.begin() as session:
        (result,) = import_content(session, content, now=clock.now())
    assert result.created and result.lessons_added >= 2
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Lesson)) == result.lessons_added
        assert session.scalar(select(Course.title)) == "Garden Notes"


@pytest.mark.parametrize(
    ("course_toml", "message"),
    [
        (FEED_ONLY.replace('feed = "https://garden.example.org/feed.xml"\n', ""), "articles"),  # neither
        (FEED_ONLY.replace("https://garden.example.org/feed.xml", "ftp://garden.example.org/feed"), "feed"),
        (FEED_ONLY.replace("https://garden.example.org/feed.xml", "https://a b"), "feed"),
    ],
)
def test_without_a_feed_articles_are_required_and_a_feed_is_an_http_address(tmp_path: Path, course_toml: str, message: str) -> None:
    content = _content(tmp_path, course_toml)
    with pytest.raises(CourseDefinitionError, match=message):
        load_course_definition(content / "courses" / "garden.toml")
