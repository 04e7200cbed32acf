"""The languages a course's emails and pages can be written in, with their message catalogues.

A course says ``language = "de"`` in its TOML file; everything the product writes around the
publisher's words — "Lesson 3 of 8", "View in browser", "Unsubscribe", dates — is then German.
Catalogues are gettext ``.po`` files under ``course/locales/<language>/LC_MESSAGES/messages.po``,
edited by translators as usual and compiled in memory by Babel on first use (no binary ``.mo`` files
in the repository). English is the source language and needs no catalogue.

Templates translate with ``{% trans %}`` blocks and ``_()``: the renderer passes :func:`gettext_callables`
of the course's language into each render, so one template environment serves every language at once.
"""

from __future__ import annotations

import datetime
import io
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from collections.abc import Mapping
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime, format_skeleton
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DEFAULT_LANGUAGE = "en"
# Languages shipped with a complete catalogue, English first (the source language).
SUPPORTED_LANGUAGES = ("en", "de", "fr")


class UnknownLanguageError(ValueError):
    """A language the product has no catalogue for."""


def check_language(language: str) -> str:
    """Return ``language`` if it is supported, else raise :class:`UnknownLanguageError` naming the
    supported ones."""
    if language not in SUPPORTED_LANGUAGES:
        raise UnknownLanguageError(
            f"unknown language {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)}"
        )
    return language


@lru_cache(maxsize=None)
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of ``language`` (an identity translation for English)."""
    check_language(language)
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    path = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


@lru_cache(maxsize=64)
def gettext_callables(language: str) -> Mapping[str, Any]:
    """``gettext``, ``ngettext`` and ``_`` for a template render in ``language``, plus the locale's
    date formatters ``format_date`` and ``format_datetime``. Built once per language (a send task
    renders a lesson per chunk; Babel's Locale.parse was a quarter of that render): read-only."""
    catalogue = translations(language)
    locale = Locale.parse(language)

    def date(value: datetime.date, format: str = "long") -> str:  # noqa: A002 - Babel's own name
        return format_date(value, format=format, locale=locale)

    def date_time(value: datetime.datetime, format: str = "medium") -> str:  # noqa: A002
        return format_datetime(value, format=format, locale=locale, tzinfo=value.tzinfo)

    def day_and_time(value: datetime.datetime) -> str:
        # "Wed, Nov 25, 09:00" / "Mi., 25. Nov., 09:00" / "mer. 25 nov., 09:00": a near date, no year.
        day = format_skeleton("MMMEd", value, locale=locale, tzinfo=value.tzinfo)
        return f"{day}, {format_datetime(value, 'HH:mm', locale=locale, tzinfo=value.tzinfo)}"

    return MappingProxyType({
        "gettext": catalogue.gettext,
        "ngettext": catalogue.ngettext,
        "_": catalogue.gettext,
        "format_date": date,
        "format_datetime": date_time,
        "format_day_and_time": day_and_time,
        "language": language,
    })


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional name
    """Mark ``message`` for the catalogue without translating it yet (it is translated when the
    language is known, with :func:`translate`)."""
    return message


def translate(language: str, message: str, **values: Any) -> str:
    """Translate ``message`` into ``language`` and fill its ``%(name)s`` placeholders (for text
    built in Python, such as an email subject)."""
    translated = translations(language).gettext(message)
    return translated % values if values else translated
