"""Every subscriber page in German and French: the course list, the course page and its embed,
check-inbox, confirm, confirmed,
preferences (with a saved notice and a locale date), unsubscribe and unsubscribed (one course and
all email) and the message page of an error, with no English frame string left on any of them.

"English left" is decided against the catalogue, not a hand list: for every source msgid whose
translation differs, no run of two or more of its words (between placeholders and tags) may appear
in the page's text, and no one-word msgid ("Pause", "Leave", "active") may be the whole text of an
element. The publisher's words (the course's title and description) stay as written."""

from __future__ import annotations

from functools import lru_cache

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from course.content.catalogue import catalogue_changed
from course.delivery.links import LinkPurpose, signer_from_settings
from course.db import get_engine
from course.i18n import SUPPORTED_LANGUAGES
from course.models import Course, Lesson, Subscriber
from course.web.app import create_app
from tests.support.web_fixtures import (
    COURSE_SLUG,
    TEST_BASE_URL,
    WebStack,
    csrf_token_of,
    link_in,
    prepare,
    web_settings,
)
from tests.support.web_fixtures import web_clock, web_smtp  # noqa: F401 - fixtures
from tests.support.translations import catalogue, source_messages

COURSE_URL = f"/courses/{COURSE_SLUG}"
# Where a msgid is cut into runs: placeholders, tags, and the ends of sentences and clauses.
_PLACEHOLDER_OR_TAG = re.compile(r"%\(\w+\)s|<[^>]+>|[.;:?!] ")


@lru_cache(maxsize=None)
def english_fragments(language: str) -> tuple[frozenset[str], frozenset[str]]:
    """Runs of 2+ words of every msgid the catalogue translates differently, and the one-word
    msgids (matched only as an element's whole text)."""
    translations = catalogue(language)
    runs: set[str] = set()
    words: set[str] = set()
    for message in source_messages():
        translated = translations.get(message, "")
        if not translated or translated == message:
            continue
        for piece in _PLACEHOLDER_OR_TAG.split(message):
            piece = piece.strip(" .,:;?!·\n")
            if not piece or piece in translated:
                continue
            if " " in piece:
                runs.add(piece)
            else:
                words.add(piece)
    return frozenset(runs), frozenset(words)


def visible_text(page: str) -> tuple[str, list[str]]:
    """The page's words (tags, scripts and styles removed) and each element's own text."""
    page = re.sub(r"(?s)<(script|style|datalist)\b.*?</\1>", " ", page)
    title = re.search(r"(?s)<title>(.*?)</title>", page)
    nodes = [html.unescape(node).strip() for node in re.findall(r">([^<]+)<", page)]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    return text, [node for node in nodes if node] + ([title.group(1).strip()] if title else [])


def english_left(page: str, language: str, publisher_words: list[str]) -> list[str]:
    runs, words = english_fragments(language)
    text, nodes = visible_text(page)
    for publisher_text in publisher_words:
        text = text.replace(" ".join(publisher_text.split()), " ")
    found = [run for run in runs if re.search(rf"(?<!\w){re.escape(run)}(?!\w)", text)]
    found += [node for node in nodes if node in words]
    return sorted(set(found))


@pytest.fixture(params=[language for language in SUPPORTED_LANGUAGES if language != "en"])
def speaking(request: pytest.FixtureRequest, tmp_path: Path, web_clock, web_smtp) -> Iterator[tuple[str, WebStack, TestClient]]:  # noqa: F811
    """A site whose default language and whose course are both `language`."""
    language: str = request.param
    settings = web_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 't.db'}",
        smtp_host=web_smtp.host,
        smtp_port=web_smtp.port,
        site_language=language,
    )
    stack = prepare(settings, web_clock, web_smtp)
    with stack.sessions.begin() as session:
        session.execute(update(Course).where(Course.slug == COURSE_SLUG).values(language=language))
    catalogue_changed()
    with TestClient(create_app(settings), base_url=TEST_BASE_URL) as client:
        yield language, stack, client
    get_engine(settings).dispose()


def test_every_subscriber_page_speaks_the_course_or_site_language(speaking: tuple[str, WebStack, TestClient]) -> None:
    language, stack, client = speaking
    with stack.sessions() as session:
        course = session.scalars(select(Course).where(Course.slug == COURSE_SLUG)).one()
        publisher_words = [course.title, course.description]
        publisher_words += list(session.scalars(select(Lesson.title).where(Lesson.course_id == course.id)))
    pages: dict[str, str] = {}

    pages["index"] = client.get("/").text
    pages["course not found"] = client.get("/courses/no-such-course").text
    course_page = pages["course"] = client.get(COURSE_URL).text
    pages["embed"] = client.get(f"{COURSE_URL}/embed").text
    form = {"email": "anna@example.org", "name": "Anna", "timezone": "Europe/Berlin", "csrf_token": csrf_token_of(course_page)}
    pages["check inbox"] = client.post(COURSE_URL, data=form).text
    [confirmation] = stack.deliver()
    confirm_url = link_in(confirmation, "/confirm/")
    pages["confirm"] = client.get(confirm_url).text
    pages["confirmed"] = client.post(confirm_url, data={"csrf_token": csrf_token_of(pages["confirm"])}).text
    pages["already confirmed"] = client.post(confirm_url, data={"csrf_token": csrf_token_of(pages["confirm"])}).text
    [lesson] = stack.deliver()

    preferences_url = link_in(lesson, "/preferences/")
    pages["preferences"] = client.get(preferences_url).text
    pause = {"csrf_token": csrf_token_of(pages["preferences"]), "action": "pause", "course_id": str(stack.course_id())}
    pages["preferences, paused"] = client.post(preferences_url, data=pause).text
    pages["preferences, bad time zone"] = client.post(
        preferences_url, data={**pause, "action": "timezone", "timezone": "Mars/Olympus"}
    ).text
    pages["expired-looking link"] = client.get(preferences_url[:-3] + "xyz").text

    with stack.sessions() as session:
        subscriber_id = session.scalars(select(Subscriber.id).where(Subscriber.email == "anna@example.org")).one()
    signer = signer_from_settings(stack.settings)
    course_unsubscribe = link_in(lesson, "/u/")
    pages["unsubscribe, one course"] = client.get(course_unsubscribe).text
    all_unsubscribe = signer.url(LinkPurpose.UNSUBSCRIBE, subscriber_id, None)
    pages["unsubscribe, all email"] = client.get(all_unsubscribe).text
    pages["unsubscribed, one course"] = client.post(course_unsubscribe, data={"List-Unsubscribe": "One-Click"}).text
    pages["preferences, left the course"] = client.get(preferences_url).text
    pages["unsubscribed, all email"] = client.post(all_unsubscribe, data={"List-Unsubscribe": "One-Click"}).text
    pages["preferences, left everything"] = client.get(preferences_url).text

    for name, page in pages.items():
        assert f'<html lang="{language}">' in page, name
        assert english_left(page, language, publisher_words) == [], name

    expected = {
        "de": {
            "index": "Kostenlose E-Mail-Kurse", "course not found": "Kurs nicht gefunden",
            "preferences": "nächste Lektion Di., 3. März, 09:00", "preferences, paused": "Pausiert.",
            "preferences, bad time zone": "Bitte wählen Sie eine Zeitzone", "unsubscribe, all email": "Von allen E-Mails abmelden?",
            "unsubscribed, one course": "Sie sind abgemeldet", "expired-looking link": "Dieser Link funktioniert nicht",
        },
        "fr": {
            "index": "Cours gratuits par e-mail", "course not found": "Cours introuvable",
            "preferences": "prochaine leçon mar. 3 mars, 09:00", "preferences, paused": "En pause.",
            "preferences, bad time zone": "Veuillez choisir un fuseau horaire", "unsubscribe, all email": "Se désabonner de tous les e-mails ?",
            "unsubscribed, one course": "Vous êtes désabonné·e", "expired-looking link": "Ce lien ne fonctionne pas",
        },
    }[language]  # fmt: skip
    for name, phrase in expected.items():
        assert phrase in visible_text(pages[name])[0], (name, phrase)


def test_the_checker_finds_english_frame_strings() -> None:
    """The check above is not vacuous: an English page fails it in German and French."""
    english = '<html lang="en"><title>Your email preferences</title><h1>Your courses</h1><button>Pause</button>'
    english += "<p>Sorry to see you go. A lesson already on its way may still arrive in the next minute</p>"
    for language in ("de", "fr"):
        assert english_left(english, language, []) == [
            "A lesson already on its way may still arrive in the next minute",
            "Pause",
            "Sorry to see you go",
            "Your courses",
            "Your email preferences",
        ], language


def test_a_page_about_no_course_speaks_the_site_language(tmp_path: Path, web_clock, web_smtp) -> None:  # noqa: F811
    settings = web_settings(tmp_path, f"sqlite:///{tmp_path / 't.db'}", site_language="de")
    prepare(settings, web_clock, web_smtp)
    with TestClient(create_app(settings), base_url=TEST_BASE_URL) as client:
        assert '<html lang="de">' in client.get("/").text  # the course list, in the site's language
        course = client.get(COURSE_URL).text  # the English course keeps its own language
        assert '<html lang="en">' in course and "Free email course" in course
    get_engine(settings).dispose()
    with pytest.raises(ValueError, match="supported: en, de, fr"):
        web_settings(tmp_path, "sqlite://", site_language="xx")
