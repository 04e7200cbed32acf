"""The first name a reader types at signup: the confirmation greets them by it (in no header until
the address is confirmed), a "name" that is a link or an address is refused with a message on the name field
(form and JSON API alike) and nothing is queued, and bidirectional controls are never stored."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.models import SignupRequest, Subscriber
from tests.support.web_fixtures import COURSE_SLUG, WebStack, csrf_token_of, link_in

COURSE_URL = f"/courses/{COURSE_SLUG}"


def sign_up(client: TestClient, email: str, name: str):  # type: ignore[no-untyped-def]
    token = csrf_token_of(client.get(COURSE_URL).text)
    return client.post(COURSE_URL, data={"email": email, "name": name, "timezone": "Europe/Berlin", "csrf_token": token})


def test_the_confirmation_greets_the_reader_by_the_first_name_they_gave(client: TestClient, web_stack: WebStack) -> None:
    sign_up(client, "ben@example.org", "Ben Miller")
    (mail,) = web_stack.deliver()
    assert "Hi Ben," in mail.get_body(("plain",)).get_content()
    assert "Hi Ben," in mail.get_body(("html",)).get_content()
    # Until the address is confirmed, the name (typed by whoever filled in the form) is in no header.
    assert str(mail["To"]) == "ben@example.org"
    web_stack.clock.advance(timedelta(minutes=5))
    confirmed = client.post(link_in(mail, "/confirm/"), data={"csrf_token": csrf_token_of(client.get(COURSE_URL).text)})
    assert confirmed.status_code == 200
    (lesson,) = web_stack.deliver()
    assert "Hi Ben," in lesson.get_body(("plain",)).get_content()
    assert str(lesson["To"]) == "Ben Miller <ben@example.org>"


def test_a_link_typed_as_a_name_is_refused_and_nothing_is_queued(client: TestClient, web_stack: WebStack) -> None:
    page = sign_up(client, "eve@example.org", "https://evil.example/claim-your-refund")
    assert page.status_code == 422
    assert 'id="signup-name-error"' in page.text and "no links" in page.text
    assert 'value="eve@example.org"' in page.text, "what was typed is kept"
    api = client.post(
        "/api/subscriptions", json={"course": COURSE_SLUG, "email": "eve@example.org", "name": "ann@example.org"}
    )
    assert api.status_code == 422 and api.json()["detail"][0]["loc"] == ["body", "name"]
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SignupRequest)) == 0
    assert web_stack.deliver() == []


def test_bidi_controls_are_removed_from_a_typed_name(client: TestClient, web_stack: WebStack) -> None:
    sign_up(client, "ann@example.org", "\u202eAnn\u2066")
    (mail,) = web_stack.deliver()
    assert "Hi Ann," in mail.get_body(("plain",)).get_content()
    web_stack.clock.advance(timedelta(minutes=5))
    client.post(link_in(mail, "/confirm/"), data={"csrf_token": csrf_token_of(client.get(COURSE_URL).text)})
    with web_stack.sessions() as session:
        assert session.scalar(select(Subscriber.name).where(Subscriber.email == "ann@example.org")) == "Ann"
