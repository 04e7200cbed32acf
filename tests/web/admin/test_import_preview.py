"""`course import` previewed (issue #26): for a course kept as files, which lessons an import would
add, edit and remove, and how many readers each touches, under the rule in place (nobody gets a
lesson twice; an edit reaches only readers who have not received the lesson). The preview matches
what the import then does, and the admin shows it."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from course.audience.course_content import import_content, preview_import
from course.audience.enrollment import enroll, get_or_create_subscriber
from course.content.catalogue import find_course
from course.models import AdminRole
from course.settings import PROJECT_ROOT
from tests.support.admin_fixtures import make_admin, sign_in
from tests.support.web_fixtures import COURSE_SLUG, WebStack
from tests.support.web_fixtures import *  # noqa: F403


def _ann_has_lesson_one(stack: WebStack) -> None:
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        course = find_course(session, COURSE_SLUG)
        assert course is not None
        enroll(session, get_or_create_subscriber(session, "ann@example.org", now=now), course, now=now)
    assert len(stack.deliver()) == 1


def test_the_preview_counts_each_change_and_its_readers_and_the_import_agrees(web_stack: WebStack, tmp_path: Path) -> None:
    _ann_has_lesson_one(web_stack)
    content = tmp_path / "content"
    shutil.copytree(PROJECT_ROOT / "content", content)
    with web_stack.sessions() as session:
        (unchanged,) = preview_import(session, content)
    assert not unchanged.changes.changed

    starter = content / "articles" / "starter.md"  # lesson 1, which Ann has: edited
    starter.write_text(starter.read_text().replace("a jar of grey paste", "a jar of pale grey paste", 1))
    loaf = content / "articles" / "first-loaf.md"  # the last lesson, which Ann waits for: edited
    loaf.write_text(loaf.read_text().rstrip() + " One more sentence, added at the very end.\n")
    (content / "articles" / "extra.md").write_text("# Crackers\n\nUse the discard for crackers, rolled thin and baked crisp.\n")
    toml = content / "courses" / f"{COURSE_SLUG}.toml"
    toml.write_text(toml.read_text().replace('"articles/first-loaf.md"]', '"articles/first-loaf.md", "articles/extra.md"]'))
    with web_stack.sessions() as session:
        (preview,) = preview_import(session, content)
    lessons = 6
    assert preview.changes.edited[0] == 1 and preview.changes.edited[-1] == lessons
    assert preview.changes.added == (lessons + 1,) and preview.changes.removed == ()
    assert preview.readers_getting_added == 1  # Ann, taking the course
    assert preview.readers_getting_edits == 1  # Ann again, for the last lesson only: lesson 1 she has

    with web_stack.sessions.begin() as session:
        (result,) = import_content(session, content, now=web_stack.clock.now())
    assert (result.lessons_added, result.lessons_updated, result.lessons_retired) == (1, len(preview.changes.edited), 0)

    toml.write_text(toml.read_text().replace(', "articles/extra.md"]', "]").replace('"articles/starter.md", ', ""))
    with web_stack.sessions() as session:
        (shrunk,) = preview_import(session, content)
    assert shrunk.changes.removed and shrunk.readers_losing_removed == 1


def test_the_admin_shows_the_preview_of_a_file_course(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
    sign_in(client, "viewer@example.org")
    page = client.get(f"/admin/courses/{COURSE_SLUG}")
    assert f'href="/admin/courses/{COURSE_SLUG}/import-preview"' in page.text
    preview = client.get(f"/admin/courses/{COURSE_SLUG}/import-preview")
    assert preview.status_code == 200 and "Nothing: the files and the stored lessons agree." in preview.text
