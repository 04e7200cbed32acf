"""The signed links in every email: one-click unsubscribe, preferences, view in browser, and what
a tampered or expired link gets."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.audience.enrollment import enroll, get_or_create_subscriber
from course.delivery.links import LinkPurpose, signer_from_settings
from course.models import (
    OPEN_DELIVERY_STATES,
    Course,
    Delivery,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from tests.support.web_fixtures import COURSE_SLUG, WebStack, csrf_token_of, link_in


@pytest.fixture
def enrolled(web_stack: WebStack) -> Iterator[int]:
    """A confirmed subscriber in Berlin with lesson 1 sent; yields the subscriber id."""
    with web_stack.sessions.begin() as session:
        course = session.scalars(select(Course).where(Course.slug == COURSE_SLUG)).one()
        subscriber = get_or_create_subscriber(
            session, "kim@example.org", name="Kim", timezone_name="Europe/Berlin", now=web_stack.clock.now()
        )
        enroll(session, subscriber, course, now=web_stack.clock.now())
        subscriber_id = subscriber.id
    (lesson,) = web_stack.deliver()
    assert lesson["Subject"].startswith("Lesson 1")
    yield subscriber_id


def rows_by_state(stack: WebStack, subscriber_id: int) -> dict[str, int]:
    with stack.sessions() as session:
        states = session.scalars(select(Delivery.state).where(Delivery.subscriber_id == subscriber_id)).all()
    return {state: states.count(state) for state in set(states)}


def enrollment_of(stack: WebStack, subscriber_id: int) -> Enrollment:
    with stack.sessions() as session:
        return session.scalars(select(Enrollment).where(Enrollment.subscriber_id == subscriber_id)).one()


def open_lessons(stack: WebStack, subscriber_id: int) -> list[Delivery]:
    with stack.sessions() as session:
        return list(
            session.scalars(
                select(Delivery)
                .where(Delivery.subscriber_id == subscriber_id, Delivery.lesson_id.is_not(None))
                .where(Delivery.state.in_([DeliveryState.PENDING, DeliveryState.HELD]))
                .order_by(Delivery.due_at)
            )
        )


# --- unsubscribe -----------------------------------------------------------------------------


def test_one_click_post_from_a_plain_client_unsubscribes(client: TestClient, web_stack: WebStack, enrolled: int) -> None:
    url = link_in(web_stack.smtp.received[0].message, "/u/")
    assert rows_by_state(web_stack, enrolled).get(DeliveryState.PENDING, 0) > 0
    # A mail provider's server: a client that never saw our pages, so no cookie and no form token,
    # just the RFC 8058 body.
    fresh = TestClient(client.app, base_url="http://testserver")
    response = fresh.post(
        url, content=b"List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200
    assert "unsubscribed" in response.text.lower()
    states = rows_by_state(web_stack, enrolled)
    assert not any(states.get(state) for state in OPEN_DELIVERY_STATES)
    assert states[DeliveryState.CANCELLED] > 0
    assert enrollment_of(web_stack, enrolled).status == EnrollmentStatus.UNSUBSCRIBED
    web_stack.clock.advance(timedelta(days=10))
    assert web_stack.deliver() == []
    again = fresh.post(url, content=b"List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"})
    assert again.status_code == 200, "unsubscribing twice is harmless"


def test_get_shows_one_button_and_changes_nothing(client: TestClient, web_stack: WebStack, enrolled: int) -> None:
    (lesson_mail,) = [m.message for m in web_stack.smtp.received]
    url = link_in(lesson_mail, "/u/")
    before = rows_by_state(web_stack, enrolled)
    page = client.get(url)
    assert page.status_code == 200
    assert page.text.count("<button") == 1 and 'method="post"' in page.text
    assert "Sourdough from Scratch" in page.text
    assert rows_by_state(web_stack, enrolled) == before
    assert enrollment_of(web_stack, enrolled).status == EnrollmentStatus.ACTIVE
    assert lesson_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in lesson_mail["List-Unsubscribe"]


def test_unsubscribe_from_everything_link(client: TestClient, web_stack: WebStack, enrolled: int) -> None:
    url = signer_from_settings(web_stack.settings).url(LinkPurpose.UNSUBSCRIBE, enrolled, None)
    assert "all email" in client.get(url).text
    assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with web_stack.sessions() as session:
        subscriber = session.get(Subscriber, enrolled)
        assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED


# --- bad links -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "purpose", "methods"),
    [
        ("/u/", LinkPurpose.UNSUBSCRIBE, ("GET", "POST")),
        ("/preferences/", LinkPurpose.PREFERENCES, ("GET", "POST")),
        ("/confirm/", LinkPurpose.CONFIRM, ("GET", "POST")),
        ("/view/", LinkPurpose.VIEW, ("GET",)),
    ],
)
def test_tampered_tokens_get_a_friendly_400(
    client: TestClient, web_stack: WebStack, path: str, purpose: LinkPurpose, methods: tuple[str, ...]
) -> None:
    signer = signer_from_settings(web_stack.settings)
    good = signer.token(purpose, 1)
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for token in (tampered, "x", "a" * 300, good.replace(".", "", 1), good + "=", good + "%21", "." + good):
        for method in methods:
            response = client.request(method, path + token)
            assert response.status_code == 400, (method, path, token)
            assert "This link does not work" in response.text
    # A valid token made for another purpose is worth nothing here either.
    other = LinkPurpose.VIEW if purpose != LinkPurpose.VIEW else LinkPurpose.UNSUBSCRIBE
    assert client.get(path + signer.token(other, 1)).status_code == 400


def test_wrongly_shaped_payload_is_a_400_not_a_500(client: TestClient, web_stack: WebStack) -> None:
    signer = signer_from_settings(web_stack.settings)
    assert client.get("/preferences/" + signer.token(LinkPurpose.PREFERENCES, "1; drop")).status_code == 400
    assert client.get("/view/" + signer.token(LinkPurpose.VIEW)).status_code == 400
    assert client.get("/u/" + signer.token(LinkPurpose.UNSUBSCRIBE, True, None)).status_code == 400
    assert client.get("/preferences/" + signer.token(LinkPurpose.PREFERENCES, 999)).status_code == 410
    # Ids beyond the database's integer range are not ours: a 400, never a 500 from the driver.
    for huge in (2**63, 2**64 + 5, 10**30):
        for path, purpose in (("/preferences/", LinkPurpose.PREFERENCES), ("/u/", LinkPurpose.UNSUBSCRIBE), ("/view/", LinkPurpose.VIEW)):
            assert client.get(path + signer.token(purpose, huge)).status_code == 400, (path, huge)
        assert client.get("/preferences/" + signer.token(LinkPurpose.PREFERENCES, 1, huge)).status_code == 400
    assert client.get("/u/" + signer.token(LinkPurpose.UNSUBSCRIBE, 2**63 - 1)).status_code < 500  # in range: looked up


def test_expired_confirm_link_gets_410(client: TestClient, web_stack: WebStack) -> None:
    client.post(
        "/api/subscriptions", json={"course": COURSE_SLUG, "email": "lou@example.org", "timezone": "UTC"}
    )
    (mail,) = web_stack.deliver()
    url = link_in(mail, "/confirm/")
    # Links are stamped and checked with the project's clock: eight days later by the test's clock.
    web_stack.clock.advance(timedelta(days=8))
    for method in ("GET", "POST"):
        response = client.request(method, url)
        assert response.status_code == 410
        assert "expired" in response.text and "Sign up again" in response.text
    with web_stack.sessions() as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == "lou@example.org")).one()
        assert subscriber.status == SubscriberStatus.PENDING


# --- preferences -----------------------------------------------------------------------------


def post_preference(client: TestClient, url: str, **form: str):  # type: ignore[no-untyped-def]
    token = csrf_token_of(client.get(url).text)
    return client.post(url, data={"csrf_token": token, **form}, follow_redirects=False)


def test_preferences_pause_resume_and_send_next(client: TestClient, web_stack: WebStack, enrolled: int) -> None:
    url = link_in(web_stack.smtp.received[0].message, "/preferences/")  # payload [subscriber_id]
    course_id = str(web_stack.course_id())
    page = client.get(url)
    assert page.status_code == 200 and "kim@example.org" in page.text and "1 of" in page.text

    response = post_preference(client, url, action="pause", course_id=course_id)
    assert response.status_code == 303 and response.headers["location"].endswith("?saved=pause")
    assert enrollment_of(web_stack, enrolled).status == EnrollmentStatus.PAUSED
    assert {row.state for row in open_lessons(web_stack, enrolled)} == {DeliveryState.HELD}
    web_stack.clock.advance(timedelta(days=3))
    assert web_stack.deliver() == [], "a paused course sends nothing"

    post_preference(client, url, action="resume", course_id=course_id)
    assert enrollment_of(web_stack, enrolled).status == EnrollmentStatus.ACTIVE
    assert {row.state for row in open_lessons(web_stack, enrolled)} == {DeliveryState.PENDING}

    post_preference(client, url, action="send_next", course_id=course_id)
    (lesson_two,) = web_stack.deliver()
    assert lesson_two["Subject"].startswith("Lesson 2")
    assert "Your next lesson is on its way" in client.get(url + "?saved=send_next").text


def test_changing_send_time_and_time_zone_reschedules_open_lessons(
    client: TestClient, web_stack: WebStack, enrolled: int
) -> None:
    signer = signer_from_settings(web_stack.settings)
    course_id = web_stack.course_id()
    url = signer.url(LinkPurpose.PREFERENCES, enrolled, course_id)  # payload [subscriber_id, course_id]
    assert post_preference(client, url, action="send_time", course_id=str(course_id), send_time="18:30").status_code == 303
    rows = open_lessons(web_stack, enrolled)
    berlin = [row.due_at.astimezone(ZoneInfo("Europe/Berlin")) for row in rows]
    assert all((due.hour, due.minute) == (18, 30) for due in berlin)
    assert rows[0].due_at > web_stack.clock.now()

    assert post_preference(client, url, action="timezone", timezone="America/Los_Angeles").status_code == 303
    rows = open_lessons(web_stack, enrolled)
    local = [row.due_at.astimezone(ZoneInfo("America/Los_Angeles")) for row in rows]
    assert all((due.hour, due.minute) == (18, 30) for due in local)

    bad = post_preference(client, url, action="timezone", timezone="Nowhere/Special")
    assert bad.headers["location"].endswith("?error=timezone")
    bad = post_preference(client, url, action="send_time", course_id=str(course_id), send_time="25:99")
    assert bad.headers["location"].endswith("?error=send_time")
    with web_stack.sessions() as session:
        subscriber = session.get(Subscriber, enrolled)
        assert subscriber is not None and subscriber.timezone == "America/Los_Angeles"


def test_preferences_unsubscribe_course_and_refuse_foreign_course(
    client: TestClient, web_stack: WebStack, enrolled: int
) -> None:
    url = signer_from_settings(web_stack.settings).url(LinkPurpose.PREFERENCES, enrolled)
    response = post_preference(client, url, action="unsubscribe_course", course_id="424242")
    assert response.status_code == 400
    post_preference(client, url, action="unsubscribe_course", course_id=str(web_stack.course_id()))
    assert enrollment_of(web_stack, enrolled).status == EnrollmentStatus.UNSUBSCRIBED
    assert open_lessons(web_stack, enrolled) == []
    missing_token = client.post(url, data={"action": "unsubscribe_all"})
    assert missing_token.status_code == 403


def test_preference_links_expire_and_every_mail_brings_a_fresh_one(
    client: TestClient, web_stack: WebStack, enrolled: int
) -> None:
    first_mail = web_stack.smtp.received[0].message
    url = link_in(first_mail, "/preferences/")
    days = web_stack.settings.preference_link_max_age_days
    web_stack.clock.advance(timedelta(days=days) - timedelta(minutes=1))
    assert client.get(url).status_code == 200
    web_stack.clock.advance(timedelta(minutes=2))
    expired = client.get(url)
    assert expired.status_code == 410
    assert "latest email" in expired.text and f"{days} days" in expired.text
    # The unsubscribe link in the same mail still works.
    assert client.get(link_in(first_mail, "/u/")).status_code == 200
    later = web_stack.deliver()
    assert later, "the next lessons went out"
    assert client.get(link_in(later[-1], "/preferences/")).status_code == 200


# --- view in browser -------------------------------------------------------------------------


def test_view_in_browser_only_for_sent_lessons(client: TestClient, web_stack: WebStack, enrolled: int) -> None:
    lesson_mail = web_stack.smtp.received[0].message
    view = client.get(link_in(lesson_mail, "/view/"))
    assert view.status_code == 200
    title = lesson_mail["Subject"].split(": ", 1)[1]
    # The email's HTML carries non-ASCII as character references (7bit on the wire): read it as a browser would.
    assert title in html.unescape(view.text)
    # The lesson only: the link is forwarded, so nothing of the reader's account is on the page.
    assert "Kim" not in view.text and "kim@example.org" not in view.text and "Hi there," in view.text
    assert "/preferences/" not in view.text and "/u/" not in view.text
    assert "/links-in-your-email" in view.text
    help_page = client.get("/links-in-your-email")
    assert help_page.status_code == 200 and "links at the bottom of the email" in help_page.text
    assert "script-src" not in view.headers["content-security-policy"]
    pending = open_lessons(web_stack, enrolled)[0]
    not_sent = signer_from_settings(web_stack.settings).url(LinkPurpose.VIEW, pending.id)
    assert client.get(not_sent).status_code == 404



def test_bounced_address_gets_no_rows_back_from_preferences(
    client: TestClient, web_stack: WebStack, enrolled: int
) -> None:
    from course.ledger import suppress

    with web_stack.sessions.begin() as session:
        suppress(session, [enrolled], now=web_stack.clock.now())
    url = signer_from_settings(web_stack.settings).url(LinkPurpose.PREFERENCES, enrolled)
    page = client.get(url)
    assert "bounced" in page.text and "Send me the next lesson now" not in page.text
    course_id = str(web_stack.course_id())
    assert post_preference(client, url, action="send_next", course_id=course_id).status_code == 400
    post_preference(client, url, action="timezone", timezone="Asia/Tokyo")
    assert open_lessons(web_stack, enrolled) == []
    web_stack.clock.advance(timedelta(days=3))
    assert web_stack.deliver() == []


def test_view_in_browser_shows_the_html_the_reader_got(client: TestClient, web_stack: WebStack, enrolled: int) -> None:
    """The page and the sender answer "which email is this delivery" alike (course.delivery.compose),
    less what belongs to the reader's account (issue #12: the view link is the one people forward):
    the greeting names no one and the account links lead to a page that points to the email."""
    lesson_mail = web_stack.smtp.received[0].message
    view = client.get(link_in(lesson_mail, "/view/"))
    html_part = lesson_mail.get_body(("html",))
    assert html_part is not None
    expected = html_part.get_content().replace("\r\n", "\n").replace("Hi Kim,", "Hi there,")
    help_url = "http://testserver/links-in-your-email"
    for path in ("/preferences/", "/u/"):
        expected = re.sub(rf"http://testserver{re.escape(path)}[A-Za-z0-9_.\-]+", help_url, expected)
    assert view.text.replace("\r\n", "\n") == expected


# --- your data ---------------------------------------------------------------------------------


def test_download_my_data_is_the_access_export_for_the_link_holder_only(
    client: TestClient, web_stack: WebStack, enrolled: int
) -> None:
    """The preferences page offers "download my data": the admin's access export, as a file no
    cache keeps, to whoever holds the subscriber's own signed link; a tampered link gets nothing."""
    from course.audience.erasure import access_export

    url = link_in(web_stack.smtp.received[0].message, "/preferences/")
    page = client.get(url)
    path = url.split("://", 1)[-1].split("/", 1)[1]
    assert f'href="/{path}/data"' in page.text and "Download my data" in page.text
    response = client.get(url + "/data")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == 'attachment; filename="my-data.json"'
    with web_stack.sessions() as session:
        subscriber = session.get(Subscriber, enrolled)
        assert subscriber is not None
        assert response.json() == access_export(session, subscriber)
    data = response.json()
    assert data["profile"]["email"] == "kim@example.org" and data["deliveries"][0]["state"] == "sent"
    token = url.rsplit("/", 1)[1]
    forged = url.rsplit("/", 1)[0] + "/" + token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(forged + "/data").status_code == 400
    unsubscribe_token = signer_from_settings(web_stack.settings).token(LinkPurpose.UNSUBSCRIBE, enrolled)
    assert client.get(f"/preferences/{unsubscribe_token}/data").status_code == 400  # another purpose's token


def test_erasure_asked_on_the_preferences_page_is_confirmed_by_mail(
    client: TestClient, web_stack: WebStack, enrolled: int
) -> None:
    """"Erase my data" sends an urgent mail through the ledger whose signed, expiring link opens a
    page with one button; its GET changes nothing (mail scanners follow links), its POST erases the
    subscriber as the owner's erasure does. A preferences token is no erase token, and the answers
    are the same whoever the link names."""
    from course.models import DeliveryPriority, Suppression

    preferences_url = link_in(web_stack.smtp.received[0].message, "/preferences/")
    response = post_preference(client, preferences_url, action="erase_request")
    assert response.status_code == 303 and response.headers["location"].endswith("?saved=erase_request")
    assert "Open the link in it to confirm" in client.get(response.headers["location"]).text
    with web_stack.sessions() as session:
        queued = session.scalars(select(Delivery).where(Delivery.template == "erase")).one()
        assert queued.priority == int(DeliveryPriority.URGENT) and queued.subscriber_id == enrolled
    (mail,) = web_stack.deliver()
    assert mail["Subject"] == "Confirm that we should erase your data" and mail["To"].endswith("<kim@example.org>")
    erase_url = link_in(mail, "/erase/")
    token = erase_url.rsplit("/", 1)[1]

    assert client.get(preferences_url.replace("/preferences/", "/erase/")).status_code == 400  # another purpose
    page = client.get(erase_url)
    assert page.status_code == 200 and "Erase my data" in page.text
    with web_stack.sessions() as session:
        assert session.get(Subscriber, enrolled).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    no_csrf = client.post(erase_url, data={}, follow_redirects=False)
    assert no_csrf.status_code in (400, 403)
    done = client.post(erase_url, data={"csrf_token": csrf_token_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/erase/{token}?done=1"
    assert "Your data is erased" in client.get(done.headers["location"]).text
    with web_stack.sessions() as session:
        erased = session.get(Subscriber, enrolled)
        assert erased is not None and erased.status == SubscriberStatus.ERASED and "kim" not in erased.email
        assert session.scalar(select(func.count()).select_from(Suppression)) == 1
    # Again, or for an id that never existed: the same answer.
    again = client.post(erase_url, data={"csrf_token": csrf_token_of(page.text)}, follow_redirects=False)
    assert again.status_code == 303
    nobody = signer_from_settings(web_stack.settings).token(LinkPurpose.ERASE, 987654, 1)
    assert client.get(f"/erase/{nobody}").status_code == 200
    assert client.post(f"/erase/{nobody}", data={"csrf_token": csrf_token_of(page.text)}, follow_redirects=False).status_code == 303
    # Expired after erase_link_max_age_hours.
    web_stack.clock.advance(timedelta(hours=web_stack.settings.erase_link_max_age_hours, minutes=1))
    expired = client.get(erase_url)
    assert expired.status_code == 410 and "24 hours" in expired.text
