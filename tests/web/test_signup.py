"""Signup and double opt-in over HTTP: what the pages store, what mail they cause, and that the
answer never tells whether an address was known."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.models import (
    Delivery,
    DeliveryKind,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from course.web.public.courses import HONEYPOT_FIELD
from tests.support.web_fixtures import COURSE_SLUG, START, WebStack, csrf_token_of, link_in

COURSE_URL = f"/courses/{COURSE_SLUG}"


def sign_up(client: TestClient, email: str, *, name: str = "", timezone: str = "Europe/Berlin", **extra: str):  # type: ignore[no-untyped-def]
    token = csrf_token_of(client.get(COURSE_URL).text)
    form = {"email": email, "name": name, "timezone": timezone, "csrf_token": token, **extra}
    return client.post(COURSE_URL, data=form)


def subscriber_named(stack: WebStack, email: str) -> Subscriber | None:
    with stack.sessions() as session:
        return session.scalars(select(Subscriber).where(Subscriber.email == email)).first()


def lesson_rows(stack: WebStack, subscriber_id: int) -> list[Delivery]:
    with stack.sessions() as session:
        return list(
            session.scalars(
                select(Delivery)
                .where(Delivery.subscriber_id == subscriber_id, Delivery.kind == DeliveryKind.LESSON)
                .order_by(Delivery.due_at)
            )
        )


def without_tokens(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", html)


def test_course_page_shows_course_lessons_and_form(client: TestClient) -> None:
    page = client.get(COURSE_URL)
    assert page.status_code == 200
    assert "Sourdough from Scratch" in page.text
    assert "one short lesson each weekday" in page.text  # the description
    assert page.text.count("<li>") >= 5  # lesson titles
    assert f'name="{HONEYPOT_FIELD}"' in page.text
    assert "data-fill-timezone" in page.text
    assert "/subscribe" not in page.text, "the publishers' snippets are in the admin (/admin/courses)"
    assert "<script>" not in page.text  # CSP allows no inline script
    index = client.get("/")
    assert index.status_code == 200 and COURSE_URL in index.text


def test_signup_stores_pending_and_queues_an_urgent_confirmation(client: TestClient, web_stack: WebStack) -> None:
    response = sign_up(client, "Ann@Example.COM", name="Ann", timezone="America/New_York")
    assert response.status_code == 200
    assert "Check your inbox" in response.text and "Ann@example.com" in response.text
    assert subscriber_named(web_stack, "Ann@example.com") is None, "the request only queues the signup"

    web_stack.handle_signups()
    subscriber = subscriber_named(web_stack, "Ann@example.com")
    assert subscriber is not None
    assert subscriber.status == SubscriberStatus.PENDING and subscriber.timezone == "America/New_York"
    assert subscriber.name == "", "a name is stored only once confirmed"
    with web_stack.sessions() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.subscriber_id == subscriber.id)).one()
        rows = list(session.scalars(select(Delivery).where(Delivery.subscriber_id == subscriber.id)))
    assert enrollment.status == EnrollmentStatus.PENDING
    assert len(rows) == 1, "a pending enrollment gets no lesson rows"
    confirmation = rows[0]
    assert (confirmation.kind, confirmation.template, confirmation.priority) == (DeliveryKind.TRANSACTIONAL, "confirm", 10)
    assert confirmation.enrollment_id == enrollment.id and confirmation.due_at == START


def test_confirm_link_activates_and_lesson_one_is_due_at_once(client: TestClient, web_stack: WebStack) -> None:
    sign_up(client, "ben@example.org", name="Ben")
    (mail,) = web_stack.deliver()
    assert mail["To"] == "ben@example.org", "a name typed with a signup is in no header before it is confirmed"
    assert "Hi Ben," in mail.get_body(("plain",)).get_content()
    assert "confirm" in mail["Subject"].lower()
    days = web_stack.settings.confirm_link_max_age_days
    for part in ("plain", "html"):
        assert f"expires after {days} days" in mail.get_body((part,)).get_content()
    confirm_url = link_in(mail, "/confirm/")

    page = client.get(confirm_url)
    assert page.status_code == 200 and "Yes, start the course" in page.text
    subscriber = subscriber_named(web_stack, "ben@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING, "GET must not confirm"

    web_stack.clock.advance(timedelta(minutes=5))
    confirmed = client.post(confirm_url, data={"csrf_token": csrf_token_of(page.text)})
    assert confirmed.status_code == 200 and "You are in" in confirmed.text
    subscriber = subscriber_named(web_stack, "ben@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE
    assert subscriber.name == "Ben", "confirming applies the signup's details"
    rows = lesson_rows(web_stack, subscriber.id)
    assert rows and rows[0].due_at == web_stack.clock.now() and rows[0].state == DeliveryState.PENDING

    (lesson,) = web_stack.deliver()
    assert lesson["Subject"].startswith("Lesson 1 of")

    again = client.post(confirm_url, data={"csrf_token": csrf_token_of(page.text)})
    assert again.status_code == 200 and "Already confirmed" in again.text
    assert len(lesson_rows(web_stack, subscriber.id)) == len(rows), "confirming twice adds nothing"
    assert web_stack.deliver() == []


def test_known_address_gets_the_same_page_and_an_already_enrolled_mail(client: TestClient, web_stack: WebStack) -> None:
    new = sign_up(client, "cat@example.org", name="Cat")
    (confirmation,) = web_stack.deliver()
    client.post(link_in(confirmation, "/confirm/"), data={"csrf_token": csrf_token_of(client.get(COURSE_URL).text)})
    web_stack.deliver()  # lesson 1

    known = sign_up(client, "cat@example.org", name="Cat")
    assert known.status_code == new.status_code == 200
    assert without_tokens(known.text) == without_tokens(new.text)
    (mail,) = web_stack.deliver()
    assert "already enrolled" in mail["Subject"]
    assert "/preferences/" in link_in(mail, "/preferences/")

    api_new = client.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": "dan@example.org"})
    api_known = client.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": "cat@example.org"})
    assert api_new.status_code == api_known.status_code == 202
    assert api_new.json() == api_known.json()


def test_pending_address_gets_the_confirmation_again_but_rate_limited(client: TestClient, web_stack: WebStack) -> None:
    limit = web_stack.settings.signup_limit_per_address
    for _ in range(limit + 2):
        assert sign_up(client, "eve@example.org").status_code == 200
    mails = web_stack.deliver()
    assert len(mails) == limit
    assert all("confirm" in mail["Subject"].lower() for mail in mails)


def test_crlf_in_the_name_is_cleaned_and_injects_no_header(client: TestClient, web_stack: WebStack) -> None:
    # A "name" carrying an address is no name: refused, with nothing queued.
    refused = sign_up(client, "fay@example.org", name="Fay\r\nBcc: victim@example.net\r\nSubject: spam")
    assert refused.status_code == 422 and "first name" in refused.text
    assert web_stack.deliver() == []
    # Line breaks in a name are cleaned away before it reaches any header.
    sign_up(client, "fay@example.org", name="Fay\r\nBcc\r\nSubject spam")
    (mail,) = web_stack.deliver()
    assert mail["Bcc"] is None
    assert len(mail.get_all("Subject")) == 1 and "spam" not in mail["Subject"]
    assert web_stack.smtp.received[-1].envelope_to == ["fay@example.org"]
    client.post(link_in(mail, "/confirm/"), data={"csrf_token": csrf_token_of(client.get(COURSE_URL).text)})
    subscriber = subscriber_named(web_stack, "fay@example.org")
    assert subscriber is not None
    assert subscriber.name == "Fay Bcc Subject spam"
    (lesson,) = web_stack.deliver()
    assert lesson["Bcc"] is None and len(lesson.get_all("Subject")) == 1


def test_bad_input_is_refused_with_a_message_per_field(client: TestClient, web_stack: WebStack) -> None:
    response = sign_up(client, "not-an-address", timezone="Mars/Olympus_Mons")
    assert response.status_code == 422
    assert "valid email address" in response.text and "time zone" in response.text
    assert 'value="not-an-address"' in response.text
    response = sign_up(client, "<script>alert(1)</script>@x")
    assert response.status_code == 422
    assert "<script>alert(1)</script>" not in response.text and "&lt;script&gt;" in response.text
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_honeypot_gets_the_usual_page_and_stores_nothing(client: TestClient, web_stack: WebStack) -> None:
    response = sign_up(client, "bot@example.org", **{HONEYPOT_FIELD: "http://spam.example"})
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert subscriber_named(web_stack, "bot@example.org") is None


def test_signup_without_csrf_token_is_refused(client: TestClient, web_stack: WebStack) -> None:
    response = client.post(COURSE_URL, data={"email": "gus@example.org", "timezone": "UTC"})
    assert response.status_code == 403
    fresh = TestClient(client.app, base_url="http://testserver")
    token = csrf_token_of(client.get(COURSE_URL).text)
    # A token copied from someone else's page is useless without their cookie.
    assert fresh.post(COURSE_URL, data={"email": "gus@example.org", "csrf_token": token}).status_code == 403
    assert subscriber_named(web_stack, "gus@example.org") is None


def test_embedded_form_posts_without_cookie(client: TestClient, web_stack: WebStack) -> None:
    embed = client.get(f"{COURSE_URL}/embed")
    assert embed.status_code == 200
    assert "frame-ancestors *" in embed.headers["content-security-policy"]
    assert "x-frame-options" not in embed.headers
    stranger = TestClient(client.app, base_url="http://testserver")
    response = stranger.post(f"{COURSE_URL}/subscribe", data={"email": "hal@example.org", "embedded": "1"})
    assert response.status_code == 200 and "Check your inbox" in response.text
    web_stack.handle_signups()
    subscriber = subscriber_named(web_stack, "hal@example.org")
    assert subscriber is not None and subscriber.timezone == "UTC"


def test_json_api_signup_and_its_errors(client: TestClient, web_stack: WebStack) -> None:
    ok = client.post(
        "/api/subscriptions", json={"course": COURSE_SLUG, "email": "ivy@example.org", "timezone": "Asia/Tokyo"}
    )
    assert ok.status_code == 202 and ok.json()["status"] == "confirmation_sent"
    assert "set-cookie" not in ok.headers
    web_stack.handle_signups()
    subscriber = subscriber_named(web_stack, "ivy@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING

    as_form = client.post("/api/subscriptions", data={"course": COURSE_SLUG, "email": "jo@example.org"})
    assert as_form.status_code == 415
    unknown = client.post("/api/subscriptions", json={"course": "no-such-course", "email": "jo@example.org"})
    assert unknown.status_code == 404
    bad = client.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": "jo@"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "email"]
    assert subscriber_named(web_stack, "jo@example.org") is None


def test_leaving_then_signing_up_again_goes_on_where_it_stopped(client: TestClient, web_stack: WebStack) -> None:
    sign_up(client, "max@example.org")
    (first_confirmation,) = web_stack.deliver()
    old_confirm_url = link_in(first_confirmation, "/confirm/")
    token = csrf_token_of(client.get(COURSE_URL).text)
    client.post(old_confirm_url, data={"csrf_token": token})
    (lesson_one,) = web_stack.deliver()
    client.post(link_in(lesson_one, "/u/"), data={"List-Unsubscribe": "One-Click"})

    left = client.post(old_confirm_url, data={"csrf_token": token})
    assert "You left this course" in left.text, "an old confirmation link does not undo an unsubscribe"

    sign_up(client, "max@example.org")
    (confirmation,) = web_stack.deliver()
    assert "confirm" in confirmation["Subject"].lower(), "a former subscriber confirms again"
    client.post(link_in(confirmation, "/confirm/"), data={"csrf_token": token})
    (lesson,) = web_stack.deliver()
    assert lesson["Subject"].startswith("Lesson 2 of"), "lessons already had are not sent again"
