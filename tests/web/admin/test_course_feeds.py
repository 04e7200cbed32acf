"""A course made in the admin from a blog's feed (issue #26): its entries are the first lessons;
beat's poll fetches the feed again with a conditional GET (the server's ETag / Last-Modified sent
back; an unchanged feed is a 304 and changes nothing), appends each new entry's lessons and
schedules them for the readers taking the course; the course page shows what arrived."""

from __future__ import annotations

import threading
from functools import partial
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.audience.course_content import poll_course_feed
from course.content.course_feeds import fetch_feed
from course.web.app import create_app
from course.audience.enrollment import enroll, get_or_create_subscriber
from course.content.importer import guide_catalogue
from course.models import AdminRole, Course, CourseArticle, Delivery, DeliveryKind, Lesson
from tests.support.admin_fixtures import csrf_of, make_admin, sign_in
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403

FEED = (Path(__file__).resolve().parents[2] / "content" / "data" / "feeds" / "garden-rss.xml").read_text()
NEW_ITEM = """  <item>
    <title>Watering in a Heatwave</title>
    <link>https://garden.example.com/2024/09/heatwave/</link>
    <guid isPermaLink="false">https://garden.example.com/?p=400</guid>
    <pubDate>Mon, 02 Sep 2024 07:00:00 +0000</pubDate>
    <description><![CDATA[<p>Water at dawn, deeply, and mulch the pots so the soil keeps what you give it through the hottest hours of the day.</p><h2>Mulch</h2><p>Straw or cardboard keeps the sun off the soil and the water in it.</p>]]></description>
  </item>
"""


class FeedServer:
    """A blog serving its feed with an ETag, answering 304 to a matching If-None-Match."""

    def __init__(self) -> None:
        self.body = FEED
        self.etag = '"v1"'
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append({key.lower(): value for key, value in self.headers.items()})
                if self.headers.get("If-None-Match") == server.etag:
                    self.send_response(304)
                    self.send_header("ETag", server.etag)
                    self.end_headers()
                    return
                data = server.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("ETag", server.etag)
                self.send_header("Last-Modified", "Mon, 02 Sep 2024 07:00:00 GMT")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.xml"

    def publish_new_entry(self) -> None:
        self.body = FEED.replace("<channel>\n", "<channel>\n" + NEW_ITEM, 1)
        self.etag = '"v2"'


@pytest.fixture
def local_client(web_stack: WebStack) -> Iterator[TestClient]:
    """The app allowed to fetch feeds from this machine (COURSE_FEED_ALLOW_PRIVATE_HOSTS): the test's blog is local."""
    settings = web_stack.settings.model_copy(update={"feed_allow_private_hosts": True})
    with TestClient(create_app(settings), base_url=TEST_BASE_URL) as test_client:
        yield test_client


@pytest.fixture
def blog() -> Iterator[FeedServer]:
    server = FeedServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_a_course_from_a_feed_grows_by_itself_with_conditional_polls(web_stack: WebStack, local_client: TestClient, blog: FeedServer) -> None:
    client = local_client
    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    form = {"csrf_token": csrf_of(client, "/admin/courses/new"), "feed_url": blog.url, "title": "The Small Garden", "slug": "garden",
            "target_words": "300", "language": "en", "sender_name": "Garden", "sender_email": "garden@example.org",
            "days_between_lessons": "1", "send_time": "09:00"}  # fmt: skip
    planned = client.post("/admin/courses/new", data={**form, "action": "plan"})
    assert planned.status_code == 200 and "The split plan" in planned.text and "Tomatoes" in planned.text, planned.text[:2000]
    published = client.post("/admin/courses/new", data={**form, "action": "publish"}, follow_redirects=False)
    assert published.status_code == 303, published.text[:2000]
    with web_stack.sessions.begin() as session:
        course = session.scalars(select(Course).where(Course.slug == "garden")).one()
        assert (course.feed_url, course.feed_etag) == (blog.url, '"v1"')
        first_lessons = session.scalar(select(func.count()).where(Lesson.course_id == course.id))
        enroll(session, get_or_create_subscriber(session, "gus@example.org", now=web_stack.clock.now()), course, now=web_stack.clock.now())

    def poll() -> object:
        with web_stack.sessions.begin() as session:
            course = session.scalars(select(Course).where(Course.slug == "garden")).one()
            return poll_course_feed(
                session, course, catalogue=guide_catalogue(web_stack.settings.content_dir), now=web_stack.clock.now(),
                fetch=partial(fetch_feed, allow_private=True),
            )

    unchanged = poll()
    assert unchanged.not_modified and blog.requests[-1]["if-none-match"] == '"v1"'  # type: ignore[attr-defined]
    assert blog.requests[-1]["if-modified-since"] == "Mon, 02 Sep 2024 07:00:00 GMT"

    blog.publish_new_entry()
    grown = poll()
    assert grown.articles_added == 1 and grown.lessons_added >= 1  # type: ignore[attr-defined]
    assert poll().not_modified  # type: ignore[attr-defined]  # v2 now
    with web_stack.sessions() as session:
        course = session.scalars(select(Course).where(Course.slug == "garden")).one()
        lessons = session.scalar(select(func.count()).where(Lesson.course_id == course.id))
        assert lessons == first_lessons + grown.lessons_added  # type: ignore[attr-defined]
        titles = session.scalars(select(Lesson.title).where(Lesson.course_id == course.id).order_by(Lesson.position)).all()
        assert titles[-1].startswith("Watering in a Heatwave") or "Mulch" in titles[-1]
        # Gus, taking the course, has the new lessons scheduled too.
        assert session.scalar(select(func.count()).where(Delivery.kind == DeliveryKind.LESSON)) == lessons
        entries = session.scalars(select(CourseArticle.entry_id).where(CourseArticle.course_id == course.id).order_by(CourseArticle.position)).all()
        assert entries[-1] == "https://garden.example.com/?p=400" and len(entries) == 3
    page = client.get("/admin/courses/garden")
    assert f"Follows the feed <a href=\"{blog.url}\">" in page.text and "(feed entry)" in page.text


def test_beat_polls_the_feeds_on_the_configured_interval(web_stack: WebStack) -> None:
    from worker.app import app
    from worker.config import celery_config

    entry = celery_config(web_stack.settings, "memory://")["beat_schedule"]["poll-course-feeds"]
    assert entry["task"] == "course.poll_feeds" and entry["schedule"] == web_stack.settings.feed_poll_interval_seconds
    assert "course.poll_feeds" in app.tasks


def test_the_api_plans_and_publishes_a_course_from_a_feed(web_stack: WebStack, local_client: TestClient, blog: FeedServer) -> None:
    client = local_client
    from tests.support.admin_fixtures import make_token

    editor = {"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.EDITOR, now=web_stack.clock.now())}"}
    planned = client.post("/api/admin/courses/plan", headers=editor, data={"feed_url": blog.url})
    assert planned.status_code == 200, planned.text
    sources = [lesson["source"] for lesson in planned.json()["lessons"]]
    assert sources[0].endswith("growing-tomatoes-on-a-balcony.html") and sources[-1].endswith("saving-seeds-from-your-tomatoes.html")
    nothing = client.post("/api/admin/courses/plan", headers=editor, data={})
    assert nothing.status_code == 400 and "feed_url" in nothing.json()["detail"]
    made = client.post("/api/admin/courses", headers=editor, data={
        "feed_url": blog.url, "title": "Garden", "slug": "garden", "sender_name": "G", "sender_email": "g@example.org"})  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["lessons"] == len(planned.json()["lessons"])
    with web_stack.sessions() as session:
        assert session.scalar(select(Course.feed_etag).where(Course.slug == "garden")) == '"v1"'


def test_a_feed_on_a_private_or_local_address_is_refused_by_default(web_stack: WebStack, client: TestClient, blog: FeedServer) -> None:
    """An editor must not make the server fetch from its own network (the metadata service, the
    database): feeds come from public addresses unless the operator allows private ones."""
    from tests.support.admin_fixtures import make_token

    editor = {"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.EDITOR, now=web_stack.clock.now())}"}
    for url in (blog.url, "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/feed.xml"):
        refused = client.post("/api/admin/courses/plan", headers=editor, data={"feed_url": url})
        assert refused.status_code == 400 and "private or local address" in refused.json()["detail"], (url, refused.text)
    assert blog.requests == []  # nothing was fetched
