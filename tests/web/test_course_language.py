"""A German course speaks German all the way: its page, the embed, "check your inbox", the
confirmation email, the confirm page and lesson 1. Other pages stay as they were."""

from __future__ import annotations

import html

from fastapi.testclient import TestClient
from sqlalchemy import update

from course.content.catalogue import catalogue_changed
from course.models import Course
from tests.support.web_fixtures import COURSE_SLUG, WebStack, csrf_token_of, link_in

COURSE_URL = f"/courses/{COURSE_SLUG}"


def speak(stack: WebStack, language: str) -> None:
    with stack.sessions.begin() as session:
        session.execute(update(Course).where(Course.slug == COURSE_SLUG).values(language=language))
    catalogue_changed()  # as `course import` does: the web app's cached course pages are dropped


def words(page: str) -> str:
    return " ".join(html.unescape(page).split())


def test_a_german_course_signs_up_confirms_and_sends_in_german(client: TestClient, web_stack: WebStack) -> None:
    speak(web_stack, "de")
    page = client.get(COURSE_URL)
    assert page.status_code == 200 and '<html lang="de">' in page.text
    text = words(page.text)
    for phrase in ["Kostenloser E-Mail-Kurs", "Kurs beginnen", "Werktags um 09:00 Uhr", "E-Mail-Adresse", "Kostenlosen Kurs beginnen"]:
        assert phrase in text, phrase
    embed = words(client.get(f"{COURSE_URL}/embed").text)
    assert "kurze Lektionen, werktags." in embed and "Kostenloser E-Mail-Kurs" in embed

    form = {"email": "anna@example.org", "name": "Anna", "timezone": "Europe/Berlin", "csrf_token": csrf_token_of(page.text)}
    answer = client.post(COURSE_URL, data=form)
    assert answer.status_code == 200 and "Sehen Sie in Ihr Postfach" in words(answer.text)

    [confirmation] = web_stack.deliver()
    assert confirmation["subject"] == "Bitte bestätigen Sie Ihre Anmeldung zu Sourdough from Scratch"
    body = confirmation.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert body.split("\n")[2].startswith("Hallo") and "Bitte bestätigen" in body
    confirm_page = client.get(link_in(confirmation, "/confirm/"))
    assert "Ein Klick zum Start" in words(confirm_page.text)
    confirmed = client.post(link_in(confirmation, "/confirm/"), data={"csrf_token": csrf_token_of(confirm_page.text)})
    assert "Sie sind dabei" in words(confirmed.text)

    [lesson] = web_stack.deliver()
    assert lesson["subject"].startswith("Lektion 1 von ")
    assert "Im Browser ansehen" in lesson.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_an_english_course_is_unchanged_and_french_days_are_french(client: TestClient, web_stack: WebStack) -> None:
    text = words(client.get(COURSE_URL).text)
    assert "Free email course" in text and "Every weekday at 09:00" in text and '<html lang="en">' in client.get("/").text
    speak(web_stack, "fr")
    text = words(client.get(COURSE_URL).text)
    assert "Cours gratuit par e-mail" in text and "Du lundi au vendredi à 09:00" in text
