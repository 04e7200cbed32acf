"""A course made in the admin from an uploaded article (issue #26): the split plan is shown before
anything is saved, a new target shows a new plan, publishing writes the course through the same
importer as `course import` (origin "admin", the uploaded source kept), a reader signs up and gets
lesson 1; refused input (a wrong file, a taken slug) saves nothing and keeps the form; and a course
file of an admin course's slug cannot take it over."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.content.definition import CourseDefinitionError
from course.audience.course_content import import_content
from course.models import AdminRole, Course, CourseArticle, Lesson
from tests.support.admin_fixtures import csrf_of, make_admin, sign_in
from tests.support.web_fixtures import WebStack, csrf_token_of, link_in
from tests.support.web_fixtures import *  # noqa: F403

import pytest

SECTION = (
    "<p>" + " ".join(f"Rye sentence {n} tells of patience and warm kitchens and slow mornings." for n in range(12)) + "</p>"
)
ARTICLE_HTML = (
    "<!doctype html><html><head><title>Baking Rye Bread</title></head><body><article><h1>Baking Rye Bread</h1>"
    + "".join(f"<h2>Step {n}</h2>{SECTION}" for n in range(1, 7))
    + "<p>See our guide on feeding a starter for the rest.</p></article></body></html>"
)


def _lesson_count(page_text: str) -> int:
    matched = re.search(r"The split plan: (\d+) lessons?", page_text)
    assert matched, page_text[:2000]
    return int(matched.group(1))


def _courses(stack: WebStack) -> int:
    with stack.sessions() as session:
        return session.scalar(select(func.count()).select_from(Course)) or 0


def test_upload_plan_change_the_target_publish_and_a_reader_gets_lesson_one(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    before = _courses(web_stack)
    csrf = csrf_of(client, "/admin/courses/new")
    form = {"csrf_token": csrf, "target_words": "150", "language": "en", "sender_name": "Rye Letter",
            "sender_email": "rye@example.org", "days_between_lessons": "1", "send_time": "09:00",
            "weekdays": ["mon", "tue", "wed", "thu", "fri"], "action": "plan"}  # fmt: skip
    planned = client.post("/admin/courses/new", data=form, files={"article": ("rye.html", ARTICLE_HTML.encode(), "text/html")})
    assert planned.status_code == 200, planned.text[:3000]
    small = _lesson_count(planned.text)
    text = html.unescape(planned.text)
    assert "Step 1" in text and "→ feeding-a-starter" in text  # a guide link found
    assert 'value="baking-rye-bread"' in text and 'value="Baking Rye Bread"' in text  # slug and title from the article
    assert _courses(web_stack) == before  # nothing saved

    carried = {"article_name": "rye.html", "article_text": re.search(r'name="article_text" value="([^"]*)"', planned.text).group(1)}  # type: ignore[union-attr]
    carried["article_text"] = html.unescape(carried["article_text"])
    bigger = client.post("/admin/courses/new", data={**form, **carried, "target_words": "600"})
    assert bigger.status_code == 200
    large = _lesson_count(bigger.text)
    assert large < small  # a larger target, fewer lessons; the file was not chosen again
    assert _courses(web_stack) == before

    published = client.post("/admin/courses/new", data={**form, **carried, "target_words": "600", "action": "publish"}, follow_redirects=False)
    assert published.status_code == 303, published.text[:3000]
    assert published.headers["location"] == "/admin/courses/baking-rye-bread?published=1"
    page = client.get(published.headers["location"])
    assert "Published: readers can sign up" in page.text and "the admin (published from an uploaded article" in page.text
    with web_stack.sessions() as session:
        course = session.scalars(select(Course).where(Course.slug == "baking-rye-bread")).one()
        assert (course.origin, course.target_words, course.sender_email) == ("admin", 600, "rye@example.org")
        assert session.scalar(select(func.count()).where(Lesson.course_id == course.id)) == large
        (source,) = session.scalars(select(CourseArticle).where(CourseArticle.course_id == course.id))
        assert source.filename == "rye.html" and "Rye sentence 11" in source.text

    # A new reader signs up on the public page and gets lesson 1.
    signup_page = client.get("/courses/baking-rye-bread")
    assert signup_page.status_code == 200
    client.post("/courses/baking-rye-bread", data={"email": "ria@example.org", "name": "Ria", "timezone": "UTC", "csrf_token": csrf_token_of(signup_page.text)})
    (confirmation,) = web_stack.deliver()
    confirm_url = link_in(confirmation, "/confirm/")
    client.post(confirm_url, data={"csrf_token": csrf_token_of(client.get(confirm_url).text)})
    (lesson_one,) = web_stack.deliver()
    assert lesson_one["Subject"].startswith(f"Lesson 1 of {large}: ")
    assert lesson_one["From"] == "Rye Letter <rye@example.org>"

    # `course import` leaves the admin's course alone, and a course file of its slug cannot take it over.
    with web_stack.sessions.begin() as session:
        import_content(session, Path(__file__).resolve().parents[3] / "content", now=web_stack.clock.now())
    assert _courses(web_stack) == before + 1


def test_refused_input_saves_nothing_and_keeps_the_form(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    before = _courses(web_stack)
    csrf = csrf_of(client, "/admin/courses/new")
    form = {"csrf_token": csrf, "target_words": "300", "language": "en", "sender_name": "Rye Letter", "title": "My rye",
            "sender_email": "rye@example.org", "days_between_lessons": "1", "send_time": "09:00", "action": "publish"}  # fmt: skip
    wrong = client.post("/admin/courses/new", data=form, files={"article": ("rye.pdf", b"%PDF-1.4", "application/pdf")})
    assert wrong.status_code == 422 and "unknown article extension" in wrong.text and 'value="My rye"' in wrong.text
    taken = client.post("/admin/courses/new", data={**form, "slug": "sourdough-from-scratch"}, files={"article": ("rye.html", ARTICLE_HTML.encode(), "text/html")})
    assert taken.status_code == 422 and "is taken by another course" in taken.text
    assert 'name="article_name" value="rye.html"' in taken.text  # the upload is kept for the next try
    bad_sender = client.post("/admin/courses/new", data={**form, "sender_email": "not an address"}, files={"article": ("rye.html", ARTICLE_HTML.encode(), "text/html")})
    assert bad_sender.status_code == 422 and "sender_email" in bad_sender.text
    assert _courses(web_stack) == before


def test_a_course_file_cannot_take_over_an_admin_course(web_stack: WebStack, tmp_path: Path) -> None:
    content = tmp_path / "content"
    (content / "courses").mkdir(parents=True)
    (content / "articles").mkdir()
    (content / "articles" / "a.md").write_text("# Sourdough\n\nSome words about bread.\n")
    (content / "courses" / "sourdough-from-scratch.toml").write_text(
        'title = "X"\narticles = ["articles/a.md"]\nsender_name = "X"\nsender_email = "x@example.org"\n'
    )
    with web_stack.sessions.begin() as session:
        session.execute(Course.__table__.update().values(origin="admin"))
    with pytest.raises(CourseDefinitionError, match="managed in the web admin"):
        with web_stack.sessions.begin() as session:
            import_content(session, content, now=web_stack.clock.now())


def test_a_content_folder_without_a_guide_catalogue_imports(web_stack: WebStack, tmp_path: Path) -> None:
    """Issue #26: guides.toml was required; a publisher without follow-up guides has none to list."""
    content = tmp_path / "content"
    (content / "courses").mkdir(parents=True)
    (content / "articles").mkdir()
    (content / "articles" / "a.md").write_text("# Rye\n\nSome words about rye bread; see our guide on feeding a starter.\n")
    (content / "courses" / "rye.toml").write_text(
        'title = "Rye"\narticles = ["articles/a.md"]\nsender_name = "X"\nsender_email = "x@example.org"\n'
    )
    with web_stack.sessions.begin() as session:
        (result,) = import_content(session, content, now=web_stack.clock.now())
    assert result.created and result.lessons_added == 1
    assert result.unmatched_references == ["our guide on feeding a starter"]


@pytest.mark.browser
def test_in_chromium_upload_an_html_article_plan_retarget_publish_and_a_reader_gets_lesson_one(
    admin_live_stack: WebStack, artefacts: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from tests.support.admin_fixtures import PASSWORD
    from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context

    stack = admin_live_stack
    make_admin(stack.sessions, "editor@example.org", AdminRole.EDITOR, now=stack.clock.now())
    article = tmp_path / "rye.html"
    article.write_text(ARTICLE_HTML)
    base = stack.settings.base_url
    problems: list[str] = []
    with chromium() as browser:
        for label, viewport in VIEWPORTS.items():
            context = new_context(browser, label)
            page = context.new_page()
            page.goto(f"{base}/admin/courses/new")
            page.fill("#email", "editor@example.org")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("h1:text('New course')")
            problems.extend(axe_violations(page, f"new-course@{label}", impacts=("serious", "critical")))
            page.set_input_files("#article", str(article))
            page.fill("#target_words", "150")
            page.click("button[value=plan]")
            page.wait_for_selector("#plan-title")
            small = _lesson_count(page.content())
            page.screenshot(path=artefacts / f"new-course-plan-{label}.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"new course@{label}: wider than the window"
            problems.extend(axe_violations(page, f"new-course-plan@{label}", impacts=("serious", "critical")))
            page.fill("#target_words", "600")
            page.click("button[value=plan]")  # the article travels with the form: no need to choose it again
            expect(page.locator("#plan-title")).not_to_contain_text(f"The split plan: {small} lesson")
            large = _lesson_count(page.content())
            assert large < small
            if label == "phone":
                page.fill("#slug", "rye-on-the-phone")  # the desktop run published the first one
            page.click("button[value=publish]")
            page.wait_for_selector("text=Published: readers can sign up")
            page.screenshot(path=artefacts / f"new-course-published-{label}.png", full_page=True)
            problems.extend(axe_violations(page, f"new-course-published@{label}", impacts=("serious", "critical")))
            context.close()

        # A new reader signs up on the published course's page and lesson 1 arrives.
        context = new_context(browser, "desktop")
        page = context.new_page()
        page.goto(f"{base}/courses/baking-rye-bread")
        expect(page.locator("h1")).to_have_text("Baking Rye Bread")
        page.fill("#signup-email", "ria@example.org")
        page.fill("#signup-name", "Ria")
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Check your inbox")
        (confirmation,) = stack.deliver()
        page.goto(link_in(confirmation, "/confirm/"))
        page.click("text=Yes, start the course")
        expect(page.locator("h1")).to_have_text("You are in")
        (lesson_one,) = stack.deliver()
        assert lesson_one["Subject"].startswith(f"Lesson 1 of {large}: ")
        assert "Hi Ria," in lesson_one.get_body(("plain",)).get_content()
        context.close()
    assert problems == [], "\n".join(problems)


def _publish(client: TestClient, slug: str, article_html: str = ARTICLE_HTML) -> None:
    csrf = csrf_of(client, "/admin/courses/new")
    form = {"csrf_token": csrf, "target_words": "600", "language": "en", "sender_name": "Rye Letter", "slug": slug,
            "sender_email": "rye@example.org", "days_between_lessons": "1", "send_time": "09:00", "action": "publish"}  # fmt: skip
    answer = client.post("/admin/courses/new", data=form, files={"article": ("rye.html", article_html.encode(), "text/html")}, follow_redirects=False)
    assert answer.status_code == 303, answer.text[:2000]


def test_an_admin_course_changes_its_settings_gains_an_article_and_a_file_course_stays_read_only(
    web_stack: WebStack, client: TestClient
) -> None:
    from course.audience.enrollment import enroll, get_or_create_subscriber
    from course.models import Delivery, DeliveryKind

    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    _publish(client, "rye")
    with web_stack.sessions.begin() as session:
        course = session.scalars(select(Course).where(Course.slug == "rye")).one()
        enroll(session, get_or_create_subscriber(session, "ria@example.org", now=web_stack.clock.now()), course, now=web_stack.clock.now())
        lessons_before = session.scalar(select(func.count()).where(Lesson.course_id == course.id))
    csrf = csrf_of(client, "/admin/courses/rye")

    changed = client.post("/admin/courses/rye/settings", data={
        "csrf_token": csrf, "title": "Rye, Slowly", "description": "New words.", "sender_name": "Rye Letter",
        "sender_email": "rye@example.org", "days_between_lessons": "2", "send_time": "07:30", "language": "de",
        "weekdays": ["sat", "sun"]}, follow_redirects=False)  # fmt: skip
    assert changed.status_code == 303
    with web_stack.sessions() as session:
        course = session.scalars(select(Course).where(Course.slug == "rye")).one()
        assert (course.title, course.days_between_lessons, course.send_time.strftime("%H:%M"), course.language) == ("Rye, Slowly", 2, "07:30", "de")
        assert course.weekdays == frozenset({5, 6})
    refused = client.post("/admin/courses/rye/settings", data={"csrf_token": csrf, "title": "X", "sender_name": "R", "sender_email": "nope", "send_time": "09:00", "days_between_lessons": "1", "language": "en"})
    assert refused.status_code == 422 and "sender_email" in refused.text

    second = "<html><body><article><h1>More Rye</h1>" + "".join(f"<h2>Extra {n}</h2>{SECTION}" for n in range(1, 4)) + "</article></body></html>"
    shown = client.post("/admin/courses/rye/articles", data={"csrf_token": csrf, "action": "plan"}, files={"article": ("more.html", second.encode(), "text/html")})
    assert shown.status_code == 200 and "Extra 1" in shown.text and "Step 1" not in shown.text  # only the new lessons
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).where(Lesson.course_id == course.id)) == lessons_before  # nothing saved yet
    text = html.unescape(re.search(r'name="article_text" value="([^"]*)"', shown.text).group(1))  # type: ignore[union-attr]
    added = client.post("/admin/courses/rye/articles", data={"csrf_token": csrf, "action": "add", "article_name": "more.html", "article_text": text}, follow_redirects=False)
    assert added.status_code == 303 and "added=" in added.headers["location"]
    with web_stack.sessions() as session:
        lessons_after = session.scalar(select(func.count()).where(Lesson.course_id == course.id, Lesson.retired_at.is_(None)))
        assert lessons_after > lessons_before
        rows = session.scalar(select(func.count()).where(Delivery.kind == DeliveryKind.LESSON, Delivery.enrollment_id.is_not(None)))
        assert rows == lessons_after  # Ria's enrollment got the new lessons scheduled
        assert [a.filename for a in session.scalars(select(CourseArticle).where(CourseArticle.course_id == course.id).order_by(CourseArticle.position))] == ["rye.html", "more.html"]

    kept = client.post("/admin/courses/sourdough-from-scratch/settings", data={"csrf_token": csrf, "title": "Mine now", "sender_name": "X", "sender_email": "x@example.org", "send_time": "09:00", "days_between_lessons": "1", "language": "en"})
    assert kept.status_code == 422 and "kept as files" in kept.text
    page = client.get("/admin/courses/sourdough-from-scratch")
    assert "Change the settings" not in page.text and "read-only here" in page.text


def test_an_owner_deletes_an_admin_course_nobody_enrolled_in_and_not_one_with_readers(web_stack: WebStack, client: TestClient) -> None:
    from course.audience.enrollment import enroll, get_or_create_subscriber

    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")
    _publish(client, "rye-one")
    _publish(client, "rye-two")
    with web_stack.sessions.begin() as session:
        course = session.scalars(select(Course).where(Course.slug == "rye-two")).one()
        enroll(session, get_or_create_subscriber(session, "ria@example.org", now=web_stack.clock.now()), course, now=web_stack.clock.now())
    csrf = csrf_of(client, "/admin/courses/rye-one")
    assert client.post("/admin/courses/rye-one/delete", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    kept = client.post("/admin/courses/rye-two/delete", data={"csrf_token": csrf})
    assert kept.status_code == 409 and "has readers" in kept.text
    files = client.post("/admin/courses/sourdough-from-scratch/delete", data={"csrf_token": csrf})
    assert files.status_code == 409 and "kept as files" in files.text
    with web_stack.sessions() as session:
        slugs = set(session.scalars(select(Course.slug)))
        assert "rye-one" not in slugs and {"rye-two", "sourdough-from-scratch"} <= slugs
        assert session.scalar(select(func.count()).select_from(CourseArticle)) == 1  # rye-two's
