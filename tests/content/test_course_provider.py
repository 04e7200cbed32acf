"""A course file may name the mail provider its lessons take first (`provider = "ses"`): checked
when the file is read, stored on the course by `course import` (PostgreSQL and SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from course.content.definition import CourseDefinitionError, load_course_definition
from course.audience.course_content import import_content
from course.clock import ManualClock
from course.models import Course

MINIMAL = """\
title = "Bread"
articles = ["articles/a.md"]
sender_name = "The Bread Letter"
sender_email = "lessons@example.com"
"""


def make_content(content_dir: Path, course_toml: str) -> Path:
    """One article and one course file under `content_dir`; the course file's path."""
    (content_dir / "articles").mkdir(exist_ok=True)
    (content_dir / "articles" / "a.md").write_text("# A\n\nOne paragraph.\n\n## Next\n\nAnother.\n", encoding="utf-8")
    (content_dir / "courses").mkdir(exist_ok=True)
    path = content_dir / "courses" / "bread.toml"
    path.write_text(course_toml, encoding="utf-8")
    return path


def test_a_course_file_names_its_provider(tmp_path: Path) -> None:
    assert load_course_definition(make_content(tmp_path, MINIMAL + 'provider = "ses"\n')).provider == "ses"
    assert load_course_definition(make_content(tmp_path, MINIMAL)).provider == ""
    with pytest.raises(CourseDefinitionError, match="key 'provider' must be a provider name"):
        load_course_definition(make_content(tmp_path, MINIMAL + 'provider = "Bulk Relay"\n'))


def test_import_stores_the_provider_and_takes_it_away(tmp_path: Path, sessions: sessionmaker[Session], clock: ManualClock) -> None:
    content = tmp_path / "content"
    content.mkdir()
    make_content(content, MINIMAL + 'provider = "ses"\n')
    with sessions.begin() as session:
        import_content(session, content, now=clock.now())
    with sessions() as session:
        assert session.scalars(select(Course.provider)).one() == "ses"
    make_content(content, MINIMAL)
    with sessions.begin() as session:
        import_content(session, content, now=clock.now())
    with sessions() as session:
        assert session.scalars(select(Course.provider)).one() is None
