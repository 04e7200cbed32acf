"""The email frame in the course's language: complete catalogues, translated renders, locale dates."""

from __future__ import annotations

import datetime
import html
import re
from types import SimpleNamespace

import pytest

from course.delivery.render import Renderer
from course.i18n import SUPPORTED_LANGUAGES, UnknownLanguageError, gettext_callables, translate
from tests.support.translations import TEMPLATES, catalogue, source_messages

def test_source_strings_are_found() -> None:
    messages = source_messages()
    assert {"Lesson %(position)s of %(count)s", "View in browser", "Unsubscribe", "Hi %(name)s,"} <= messages
    assert len(messages) >= 25


@pytest.mark.parametrize("language", [language for language in SUPPORTED_LANGUAGES if language != "en"])
def test_every_source_string_is_translated_with_the_same_placeholders(language: str) -> None:
    translations = catalogue(language)
    missing = sorted(source_messages() - {message for message, text in translations.items() if text})
    assert not missing, f"{language}: untranslated: {missing}"
    for message, text in translations.items():
        assert set(re.findall(r"%\(\w+\)s", message)) == set(re.findall(r"%\(\w+\)s", text)), message
        assert ("<strong>" in message) == ("<strong>" in text), message
        assert ("<a href" in message) == ("<a href" in text), message


def lesson() -> SimpleNamespace:
    return SimpleNamespace(
        position=2, lesson_count=5, title="Warum Wiederholung wirkt", reading_minutes=3,
        body={"blocks": [{"heading": None, "paragraphs": ["Ein Absatz."]}], "references": []},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("language", "in_both", "in_html", "in_text"),
    [
        ("en", ["Lesson 2 of 5", "3 min read", "Manage preferences", "Unsubscribe"], "View in browser", "View in a browser:"),
        ("de", ["Lektion 2 von 5", "3 Min. Lesezeit", "Einstellungen verwalten", "Abmelden"], "Im Browser ansehen", "Im Browser ansehen:"),
        ("fr", ["Leçon 2 sur 5", "Lecture : 3 min", "Gérer mes préférences", "Se désabonner"], "Voir dans le navigateur", "Voir dans un navigateur :"),
    ],
)
def test_lesson_email_frame_is_in_the_course_language(
    language: str, in_both: list[str], in_html: str, in_text: str
) -> None:
    renderer = Renderer(TEMPLATES)
    template = renderer.lesson_template(course=SimpleNamespace(title="Brot", language=language), lesson=lesson())
    email = template.fill({"greeting": "", "view_url": "https://x.example/v", "preferences_url": "https://x.example/p", "unsubscribe_url": "https://x.example/u"})
    html_words = html.unescape(re.sub(r"<[^>]+>", "", email.html))
    for phrase in in_both:
        assert phrase in email.text and phrase in html_words, phrase
    assert in_html in html_words and in_text in email.text
    assert email.subject.startswith(in_both[0])
    assert f'<html lang="{language}"' in email.html


def test_translate_fills_placeholders_and_refuses_unknown_languages() -> None:
    assert translate("de", "Hi %(name)s,", name="Ann") == "Hallo Ann,"
    assert translate("en", "Hi there,") == "Hi there,"
    with pytest.raises(UnknownLanguageError, match="supported: en, de, fr"):
        translate("xx", "Hi there,")


def test_dates_are_formatted_for_the_locale() -> None:
    day = datetime.date(2024, 3, 3)
    assert gettext_callables("en")["format_date"](day) == "March 3, 2024"
    assert gettext_callables("de")["format_date"](day) == "3. März 2024"
    assert gettext_callables("fr")["format_date"](day) == "3 mars 2024"


@pytest.mark.parametrize(
    ("language", "in_both", "in_html", "in_text"),
    [
        ("en", ["You are receiving this because you subscribed to The Paper.", "Manage preferences", "Unsubscribe"], "View in browser", "View in a browser:"),
        ("de", ["Sie erhalten diese E-Mail, weil Sie The Paper abonniert haben.", "Einstellungen verwalten", "Abmelden"], "Im Browser ansehen", "Im Browser ansehen:"),
        ("fr", ["Vous recevez ce message parce que vous êtes abonné·e à The Paper.", "Gérer mes préférences", "Se désabonner"], "Voir dans le navigateur", "Voir dans un navigateur :"),
    ],
)
def test_newsletter_email_frame_is_in_the_site_language(language: str, in_both: list[str], in_html: str, in_text: str) -> None:
    """A newsletter belongs to no course: its frame speaks COURSE_SITE_LANGUAGE; its subject and
    body are the editor's own words, untouched."""
    template = Renderer(TEMPLATES).campaign_template(
        subject="November", body_markdown="Some **news**.", sender_name="The Paper", language=language
    )
    email = template.fill({"greeting": "", "view_url": "https://x.example/v", "preferences_url": "https://x.example/p", "unsubscribe_url": "https://x.example/u"})
    html_words = html.unescape(re.sub(r"<[^>]+>", "", email.html))
    for phrase in in_both:
        assert phrase in " ".join(email.text.split()) and phrase in " ".join(html_words.split()), phrase
    assert in_html in html_words and in_text in email.text
    assert email.subject == "November" and "Some news." in html_words
    assert f'<html lang="{language}"' in email.html
