"""The language an article is written in, and the direction its text runs.

The splitter needs the article's own language, not the course's: sentences are cut by that
language's rules ("и т. д." is not the end of a Russian sentence) and a lesson that goes on with a
section is marked "(continued)" in it. The course's language only sets the email's frame.

1. A language the publisher declared wins: front matter ``lang`` (or ``language``), or the HTML
   page's ``<html lang>`` (which the HTML reader keeps as ``lang`` in the article's meta).
2. Otherwise py3langid (a compact, well-kept fork of langid.py, 97 languages) classifies the
   article's title and prose; code blocks are left out, as they are written in no human language.
3. When the text is too short, or the classifier is less than ``MIN_CONFIDENCE`` sure, the article
   is taken to be English, the language the product was written for.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from course.content.article import Article
from course.content.blocks import Code, Heading, block_plain, inline_plain, walk

DEFAULT_ARTICLE_LANGUAGE = "en"
# Below this normalised probability, or with fewer letters than MIN_LETTERS, the guess is not used.
MIN_CONFIDENCE = 0.90
MIN_LETTERS = 20
# Enough text for a sure guess; classifying a whole long article only costs time.
MAX_SAMPLE_CHARS = 4000
_TAG = re.compile(r"[A-Za-z]{2,3}(?=$|[-_])")


@lru_cache(maxsize=1)
def _identifier():  # type: ignore[no-untyped-def]
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def declared_language(meta_value: object) -> str | None:
    """"es-ES", "zh_Hans", "RU" → "es", "zh", "ru"; anything else (a list, nonsense) → None."""
    if not isinstance(meta_value, str):
        return None
    match = _TAG.match(meta_value.strip())
    return match.group(0).lower() if match else None


def detect_language(text: str) -> str | None:
    """py3langid's language of ``text``, or None when it is too short or the guess is unsure."""
    if sum(1 for char in text if char.isalpha()) < MIN_LETTERS:
        return None
    language, confidence = _identifier().classify(text[:MAX_SAMPLE_CHARS])
    return str(language) if confidence >= MIN_CONFIDENCE else None


def article_language(article: Article) -> str:
    """The article's language as a lowercase ISO 639-1 code (see the module docstring)."""
    for key in ("lang", "language"):
        declared = declared_language(article.meta.get(key))
        if declared:
            return declared
    prose = [article.title] + [
        inline_plain(block.text) if isinstance(block, Heading) else block_plain(block)
        for block in walk(article.blocks)
        if not isinstance(block, Code) and not hasattr(block, "items") and not hasattr(block, "blocks")
    ]
    return detect_language("\n".join(prose)) or DEFAULT_ARTICLE_LANGUAGE


def strong_direction(text: str) -> str | None:
    """"rtl" or "ltr" from the first letter with a strong direction, None when there is none."""
    for char in text:
        direction = unicodedata.bidirectional(char)
        if direction in ("R", "AL"):
            return "rtl"
        if direction == "L":
            return "ltr"
    return None


def text_direction(text: str) -> str:
    """"rtl" when the first letter with a strong direction is right-to-left (Arabic, Hebrew, Syriac,
    Thaana…), else "ltr": the rule of the Unicode bidirectional algorithm for a paragraph (P2, P3)."""
    return strong_direction(text) or "ltr"
    return "ltr"
