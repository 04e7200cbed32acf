"""The project's translatable messages and its catalogues, for the tests that check every message is
translated (tests/test_i18n.py) and that no English is left on a page (tests/web/test_page_language.py)."""

from __future__ import annotations

from functools import lru_cache

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from course.i18n import LOCALES_DIR
from course.settings import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "templates"


@lru_cache(maxsize=1)
def source_messages() -> frozenset[str]:
    """Every msgid of the email and page templates, of translate(language, "…") calls and of N_("…")
    marks in course/ (a plural message counts by its singular). Read once per test session: Babel's
    extraction from every module took about a second, and a page check asked for it once per page."""
    options = {"extensions": "jinja2.ext.i18n"}
    patterns = ["email/**.html", "email/**.txt", "web/**.html"]
    messages = {
        message if isinstance(message, str) else message[0]
        for _, _, message, _, _ in extract_from_dir(
            str(TEMPLATES), [(pattern, "jinja2") for pattern in patterns],
            options_map={pattern: options for pattern in patterns},
        )
    }
    messages |= {
        message
        for _, _, message, _, _ in extract_from_dir(
            str(PROJECT_ROOT / "course"), [("**.py", "python")], keywords={"translate": (2,), "N_": None}
        )
        if isinstance(message, str)
    }
    return frozenset(messages)


def catalogue(language: str) -> dict[str, str]:
    """msgid -> translation (a plural message by its singular, with all its forms joined)."""
    with (LOCALES_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as po_file:
        entries = [message for message in read_po(po_file) if message.id]
    return {
        (entry.id if isinstance(entry.id, str) else entry.id[0]): (
            entry.string if isinstance(entry.string, str) else " ".join(entry.string) if all(entry.string) else ""
        )
        for entry in entries
    }
