"""The admin's Subscribers pages and API: a filter is a bookmarkable URL and the same API query,
pages follow a keyset cursor, a subscriber's page shows details, tags, courses and the timeline;
editors act (tags, unsubscribe, resubscribe with a reason, bulk actions on the whole filter),
viewers only read; refused input is one clear message and changes nothing. Chromium: search →
subscriber page → tag, axe-clean at 1280 and 390 px."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.audience.enrollment import enroll, get_or_create_subscriber
from course.models import AdminRole, Course, Subscriber, SubscriberEvent, SubscriberStatus, SubscriberTag
from tests.support.admin_fixtures import PASSWORD, csrf_of, make_admin, make_token, sign_in
from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context
from tests.support.web_fixtures import COURSE_SLUG, WebStack
from tests.support.web_fixtures import *  # noqa: F403


def _readers(stack: WebStack, count: int = 3) -> list[int]:
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        course = session.scalars(select(Course).where(Course.slug == COURSE_SLUG)).one()
        ids = []
        for n in range(count):
            reader = get_or_create_subscriber(session, f"reader{n}@example.org", name=f"Reader {n}", timezone_name="Europe/Berlin", now=now)
            ids.append(reader.id)
        enroll(session, session.get(Subscriber, ids[0]), course, now=now)  # type: ignore[arg-type]
        session.add(SubscriberTag(subscriber_id=ids[0], tag="vip"))
        get_or_create_subscriber(session, "ann.other@shop.example", name="Annabel", now=now)
    return ids


def _signed_in(stack: WebStack, client: TestClient, role: AdminRole) -> None:
    make_admin(stack.sessions, f"{role}@example.org", role, now=stack.clock.now())
    sign_in(client, f"{role}@example.org")


def test_the_list_searches_filters_and_pages_by_bookmarkable_urls(web_stack: WebStack, client: TestClient) -> None:
    ids = _readers(web_stack, 3)
    _signed_in(web_stack, client, AdminRole.VIEWER)
    everyone = client.get("/admin/subscribers")
    assert everyone.status_code == 200
    assert 'href="/admin/subscribers" aria-current="page"' in everyone.text  # in the navigation
    assert "4 subscribers" in everyone.text and "Act on all" not in everyone.text  # viewers get no bulk form
    found = client.get("/admin/subscribers?q=READER1")
    assert "reader1@example.org" in found.text and "reader2@example.org" not in found.text
    assert "1 subscriber match" in html.unescape(found.text)
    tagged = client.get("/admin/subscribers?tag=vip&course=" + COURSE_SLUG)
    assert "reader0@example.org" in tagged.text and "reader1@example.org" not in tagged.text
    bad = client.get("/admin/subscribers?status=gone&from=yesterday")
    assert bad.status_code == 400 and "unknown status" in html.unescape(bad.text) and 'aria-invalid="true"' in bad.text

    with web_stack.sessions.begin() as session:  # enough readers for three pages of 50
        for n in range(110):
            get_or_create_subscriber(session, f"many{n:03d}@example.net", now=web_stack.clock.now())
    first = client.get("/admin/subscribers?q=example.net")
    assert first.text.count('href="/admin/subscribers/') == 50
    next_link = html.unescape(first.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0])
    assert next_link.startswith("/admin/subscribers?q=example.net&cursor=")
    second = client.get(next_link)
    assert "many059@example.net" in second.text and "many060@example.net" not in second.text
    assert "First page" in second.text
    assert client.get("/admin/subscribers?cursor=abc").status_code == 400
    assert ids  # the readers made above


def test_a_subscribers_page_shows_details_courses_and_the_timeline(web_stack: WebStack, client: TestClient) -> None:
    ids = _readers(web_stack)
    _signed_in(web_stack, client, AdminRole.VIEWER)
    page = client.get(f"/admin/subscribers/{ids[0]}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "reader0@example.org" in text and "Europe/Berlin" in text and ">vip<" in text
    assert "Sourdough from Scratch" in text and "0 of " in text  # the course with its progress
    assert "Lesson 1 of Sourdough from Scratch" in text and ": pending" in text  # the ledger's rows in the timeline
    assert 'name="change"' not in page.text  # a viewer gets no forms
    assert client.get("/admin/subscribers/999999").status_code == 404


def test_an_editor_tags_unsubscribes_and_resubscribes_with_a_reason(web_stack: WebStack, client: TestClient) -> None:
    ids = _readers(web_stack)
    _signed_in(web_stack, client, AdminRole.EDITOR)
    url = f"/admin/subscribers/{ids[1]}"
    token = csrf_of(client, url)
    assert client.post(url, data={"csrf_token": token, "change": "tag-add", "tag": "spring"}, follow_redirects=False).status_code == 303
    assert client.post(url, data={"csrf_token": token, "change": "unsubscribe", "reason": "asked by phone"}, follow_redirects=False).status_code == 303
    refused = client.post(url, data={"csrf_token": token, "change": "resubscribe", "reason": " "})
    assert refused.status_code == 422 and "needs a reason" in refused.text
    assert client.post(url, data={"csrf_token": token, "change": "resubscribe", "reason": "paper form"}, follow_redirects=False).status_code == 303
    page = html.unescape(client.get(url).text)
    assert "Tag added: spring" in page and "Unsubscribed from everything: asked by phone" in page and "Resubscribed: paper form" in page
    assert "editor@example.org" in page  # recorded as done by that admin
    with web_stack.sessions.begin() as session:
        session.get(Subscriber, ids[2]).status = SubscriberStatus.COMPLAINED  # type: ignore[union-attr]
    never = client.post(f"/admin/subscribers/{ids[2]}", data={"csrf_token": token, "change": "resubscribe", "reason": "they asked"})
    assert never.status_code == 422 and "never resubscribed" in never.text
    assert "never resubscribed" in client.get(f"/admin/subscribers/{ids[2]}").text  # and no form offers it


def test_a_bulk_action_applies_to_the_whole_filter_not_the_page(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack, 3)
    with web_stack.sessions.begin() as session:
        for n in range(60):
            get_or_create_subscriber(session, f"bulk{n:02d}@example.net", now=web_stack.clock.now())
    _signed_in(web_stack, client, AdminRole.EDITOR)
    listing = client.get("/admin/subscribers?q=bulk")
    assert "Apply to 60" in listing.text
    token = csrf_token = csrf_of(client, "/admin/subscribers?q=bulk")
    answer = client.post(
        "/admin/subscribers/bulk", data={"csrf_token": csrf_token, "q": "bulk", "action": "tag-add", "value": "spring"}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/subscribers?q=bulk&done=")
    assert "tagged 60 of the 60" in client.get(answer.headers["location"]).text
    again = client.post("/admin/subscribers/bulk", data={"csrf_token": token, "q": "bulk", "action": "tag-add", "value": "spring"})
    assert "tagged 0 of the 60" in again.text  # idempotent
    refused = client.post("/admin/subscribers/bulk", data={"csrf_token": token, "q": "bulk", "action": "enrol", "value": "nope"})
    assert refused.status_code == 422 and "Unknown course" in html.unescape(refused.text)
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).where(SubscriberTag.tag == "spring")) == 60
        assert session.scalar(select(func.count()).where(SubscriberEvent.kind == "tag_added")) == 60


def test_the_api_lists_with_the_same_filter_and_shows_one_with_events(web_stack: WebStack, client: TestClient) -> None:
    ids = _readers(web_stack)
    token = make_token(web_stack.sessions, AdminRole.VIEWER, now=web_stack.clock.now())
    auth = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/admin/subscribers", params={"q": "reader", "limit": 2}, headers=auth)
    assert listed.status_code == 200
    body = listed.json()
    assert [row["email"] for row in body["subscribers"]] == ["reader2@example.org", "reader1@example.org"]
    rest = client.get("/api/admin/subscribers", params={"q": "reader", "limit": 2, "cursor": body["next_cursor"]}, headers=auth).json()
    assert [row["email"] for row in rest["subscribers"]] == ["reader0@example.org"] and rest["next_cursor"] is None
    assert rest["subscribers"][0]["tags"] == ["vip"]
    by_tag = client.get("/api/admin/subscribers", params={"tag": "vip", "course": COURSE_SLUG}, headers=auth).json()
    assert [row["id"] for row in by_tag["subscribers"]] == [ids[0]]
    refused = client.get("/api/admin/subscribers", params={"status": "gone"}, headers=auth)
    assert refused.status_code == 400 and "status" in refused.json()["fields"]
    one = client.get(f"/api/admin/subscribers/{ids[0]}", headers=auth).json()
    assert one["enrollments"][0]["course"] == COURSE_SLUG and one["tags"] == ["vip"]
    assert any(event["kind"] == "delivery" for event in one["events"])
    assert client.get("/api/admin/subscribers/999999", headers=auth).status_code == 404
    schema = client.get("/api/openapi.json").json()
    assert "/api/admin/subscribers" in schema["paths"] and "/api/admin/subscribers/{subscriber_id}" in schema["paths"]


@pytest.mark.browser
def test_search_then_subscriber_page_then_tag_in_chromium_axe_clean(admin_live_stack: WebStack, artefacts: Path) -> None:
    ids = _readers(admin_live_stack)
    make_admin(admin_live_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=admin_live_stack.clock.now())
    base = admin_live_stack.settings.base_url
    problems: list[str] = []
    with chromium() as browser:
        for label, viewport in VIEWPORTS.items():
            context = new_context(browser, label)
            page = context.new_page()
            page.goto(f"{base}/admin/subscribers")
            if page.locator("#password").count():
                page.fill("#email", "editor@example.org")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
            page.wait_for_selector("h1:text('Subscribers')")
            page.fill("#f-q", "reader0")
            page.click("form[role=search] button[type=submit]")
            page.wait_for_selector("text=1 subscriber match")
            assert "q=reader0" in page.url  # the filter is the URL
            page.screenshot(path=artefacts / f"subscribers-{label}.png", full_page=True)
            problems.extend(axe_violations(page, f"subscribers@{label}", impacts=("serious", "critical")))
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"subscribers@{label}: too wide"
            page.click("a:text('reader0@example.org')")
            page.wait_for_selector("h2:text('Timeline')")
            page.fill("#tag-add", f"seen-{label}")
            page.click("button:text('Add tag')")
            page.wait_for_selector(f"text=Tag added: seen-{label}")
            page.screenshot(path=artefacts / f"subscriber-{label}.png", full_page=True)
            problems.extend(axe_violations(page, f"subscriber@{label}", impacts=("serious", "critical")))
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"subscriber@{label}: too wide"
            context.close()
    assert problems == [], "\n".join(problems)
    with admin_live_stack.sessions() as session:
        assert set(session.scalars(select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == ids[0]))) == {"vip", "seen-desktop", "seen-phone"}
