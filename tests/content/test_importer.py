"""Importing content/ into the database, on PostgreSQL and SQLite, using copies of the shipped
sourdough course: re-imports are idempotent, edits reach unsent lessons only, removed lessons stop,
added lessons queue up after the existing ones, and a broken article writes nothing at all."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from course.content.article import ArticleError
from course.clock import ManualClock
from course.audience.enrollment import enroll, get_or_create_subscriber, pause
from course.audience.course_content import import_content
from course.content.importer import CourseImport
from course.models import Course, Delivery, DeliveryState, Enrollment, Lesson
from course.settings import PROJECT_ROOT
from tests.support.pipeline_fixtures import rows_of, snapshot

COURSE_FILE = "courses/sourdough-from-scratch.toml"


@pytest.fixture
def content(tmp_path: Path) -> Path:
    copy = tmp_path / "content"
    shutil.copytree(PROJECT_ROOT / "content", copy)
    return copy


def run_import(sessions: sessionmaker[Session], content: Path, clock: ManualClock) -> CourseImport:
    with sessions.begin() as session:
        [result] = import_content(session, content, now=clock.now())
    return result


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}"
    path.write_text(text.replace(old, new))


def enroll_ann(sessions: sessionmaker[Session], clock: ManualClock, address: str = "ann@example.org") -> int:
    with sessions.begin() as session:
        course = session.scalars(select(Course)).one()
        subscriber = get_or_create_subscriber(session, address, now=clock.now())
        return enroll(session, subscriber, course, now=clock.now()).id


def lesson_rows(sessions: sessionmaker[Session], enrollment_id: int) -> list[Delivery]:
    with sessions() as session:
        return rows_of(session, session.get(Enrollment, enrollment_id))


def mark_sent(sessions: sessionmaker[Session], rows: list[Delivery]) -> None:
    with sessions.begin() as session:
        session.execute(update(Delivery).where(Delivery.id.in_([r.id for r in rows])).values(state=DeliveryState.SENT))


def test_importing_twice_changes_nothing(db: sessionmaker[Session], clock: ManualClock, content: Path) -> None:
    first = run_import(db, content, clock)
    assert (first.slug, first.created, first.lessons_added) == ("sourdough-from-scratch", True, 6)
    enroll_ann(db, clock)
    with db() as session:
        before = snapshot(session)
        hashes = list(session.scalars(select(Lesson.content_hash).order_by(Lesson.position)))
    clock.advance(timedelta(days=1))
    second = run_import(db, content, clock)
    assert not second.changed
    assert (second.lessons_added, second.lessons_updated, second.lessons_retired, second.lessons_unchanged) == (0, 0, 0, 6)
    assert second.deliveries_cancelled == second.enrollments_extended == 0
    with db() as session:
        assert snapshot(session) == before
        assert list(session.scalars(select(Lesson.content_hash).order_by(Lesson.position))) == hashes


def test_editing_an_article_updates_unsent_lessons_and_resends_nothing(db: sessionmaker[Session], clock: ManualClock, content: Path) -> None:
    run_import(db, content, clock)
    enrollment_id = enroll_ann(db, clock)
    rows = lesson_rows(db, enrollment_id)
    mark_sent(db, rows[:1])
    with db() as session:
        old_hashes = dict(session.execute(select(Lesson.position, Lesson.content_hash)).all())
    # One edit in lesson 1 (already sent) and one in lesson 2 (not yet).
    article = content / "articles" / "starter.md"
    edit(article, "Every sourdough loaf begins", "Each sourdough loaf begins")
    edit(article, "You need very little equipment.", "You need hardly any equipment.")
    clock.advance(timedelta(hours=1))
    result = run_import(db, content, clock)
    assert (result.lessons_updated, result.lessons_unchanged, result.lessons_added) == (2, 4, 0)
    with db() as session:
        lessons = {lesson.position: lesson for lesson in session.scalars(select(Lesson))}
        assert session.scalar(select(func.count()).select_from(Delivery)) == 6
    assert "hardly any equipment" in str(lessons[2].body) and "very little equipment" not in str(lessons[2].body)
    assert "Each sourdough loaf" in str(lessons[1].body)
    assert {p for p, lesson in lessons.items() if lesson.content_hash != old_hashes[p]} == {1, 2}
    assert lessons[2].updated_at == clock.now()
    after = lesson_rows(db, enrollment_id)
    # Same rows, same times: lesson 1 stays sent (no second row for it), the rest wait as before.
    assert [(r.id, r.state, r.due_at) for r in after] == [(rows[0].id, DeliveryState.SENT, rows[0].due_at)] + [
        (r.id, DeliveryState.PENDING, r.due_at) for r in rows[1:]
    ]


def test_removing_the_last_article_retires_its_lessons_and_cancels_their_rows(db: sessionmaker[Session], clock: ManualClock, content: Path) -> None:
    run_import(db, content, clock)
    enrollment_id = enroll_ann(db, clock)
    edit(content / COURSE_FILE, 'articles = ["articles/starter.md", "articles/first-loaf.md"]', 'articles = ["articles/starter.md"]')
    clock.advance(timedelta(hours=1))
    result = run_import(db, content, clock)
    assert (result.lessons_retired, result.deliveries_cancelled, result.lessons_unchanged) == (3, 3, 3)
    with db() as session:
        retired = dict(session.execute(select(Lesson.position, Lesson.retired_at)).all())
    assert retired == {1: None, 2: None, 3: None, 4: clock.now(), 5: clock.now(), 6: clock.now()}
    assert [r.state for r in lesson_rows(db, enrollment_id)] == ["pending"] * 3 + ["cancelled"] * 3
    # Putting the article back brings the lessons back for the running enrollment.
    edit(content / COURSE_FILE, 'articles = ["articles/starter.md"]', 'articles = ["articles/starter.md", "articles/first-loaf.md"]')
    result = run_import(db, content, clock)
    assert result.lessons_updated == 3 and result.enrollments_extended == 1
    assert [r.state for r in lesson_rows(db, enrollment_id)] == ["pending"] * 6


def test_adding_an_article_schedules_its_lessons_after_the_existing_ones(db: sessionmaker[Session], clock: ManualClock, content: Path) -> None:
    course_file = content / COURSE_FILE
    edit(course_file, 'articles = ["articles/starter.md", "articles/first-loaf.md"]', 'articles = ["articles/starter.md"]')
    run_import(db, content, clock)
    ann = enroll_ann(db, clock)
    ben = enroll_ann(db, clock, "ben@example.org")
    with db.begin() as session:
        pause(session, session.get(Enrollment, ben), now=clock.now())
    before = lesson_rows(db, ann)
    mark_sent(db, before[:1])
    assert [r.due_at.date() for r in before] == [date(2026, 3, 5), date(2026, 3, 6), date(2026, 3, 9)]  # Thu, Fri, Mon
    edit(course_file, 'articles = ["articles/starter.md"]', 'articles = ["articles/starter.md", "articles/first-loaf.md"]')
    clock.advance(timedelta(hours=2))
    result = run_import(db, content, clock)
    assert (result.lessons_added, result.enrollments_extended) == (3, 1)
    after = lesson_rows(db, ann)
    assert [(r.id, r.due_at) for r in after[:3]] == [(r.id, r.due_at) for r in before]
    assert [r.state for r in after] == ["sent"] + ["pending"] * 5
    assert [r.due_at.date() for r in after[3:]] == [date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)]
    assert {(r.due_at.hour, r.due_at.minute) for r in after[1:]} == {(9, 0)}
    # The paused enrollment gets nothing scheduled until it is resumed.
    assert [r.state for r in lesson_rows(db, ben)] == ["held"] * 3


@pytest.mark.parametrize("broken", [b"", b"\x00\x01binary\xff", b"# Title only\n"], ids=["empty", "binary", "no-paragraphs"])
def test_a_broken_article_writes_nothing(db: sessionmaker[Session], clock: ManualClock, content: Path, broken: bytes) -> None:
    run_import(db, content, clock)
    enroll_ann(db, clock)
    with db() as session:
        before = snapshot(session)
    # The sourdough course changes (it sorts first, so it would be written first) and a second
    # course comes with a broken article: nothing of either may reach the database.
    edit(content / "articles" / "starter.md", "You need very little equipment.", "You need hardly any equipment.")
    (content / "articles" / "broken.md").write_bytes(broken)
    (content / "courses" / "zz-broken.toml").write_text(
        (content / COURSE_FILE).read_text().replace('["articles/starter.md", "articles/first-loaf.md"]', '["articles/first-loaf.md", "articles/broken.md"]')
    )
    with db() as session:
        with pytest.raises(ArticleError, match="broken.md"):
            import_content(session, content, now=clock.now())
        # Still inside the import's transaction: nothing flushed, nothing pending to flush.
        assert not session.new and not session.dirty
        assert snapshot(session) == before
        session.rollback()
    with db() as session:
        assert snapshot(session) == before
