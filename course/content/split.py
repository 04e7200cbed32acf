"""Split an article into drip lessons of about ``target_words`` words' reading time each.

Length is reading time in every script: words at ``READING_WORDS_PER_MINUTE`` where words are
separated by spaces, and characters at ``CJK_CHARACTERS_PER_MINUTE`` in Chinese and Japanese, which
are written without spaces; a target of 300 words is the time 300 English words take to read.

Lessons are cut between blocks only — never inside a list, a table, a quote or a code block — and
preferably before a heading. A paragraph longer than a whole lesson is the one exception: it is cut
between two of its sentences (found with pysbd, in the article's own language, see
:mod:`course.content.language`), never inside one. A code block is kept with the paragraph that
introduces it and the one that explains it, and footnotes go with the lessons that refer to them.

The split is a small optimisation problem solved exactly by dynamic programming over the places a
cut may go (see :func:`split_article`), rather than a greedy walk: a greedy walk leaves tiny tails
that the optimisation avoids by balancing the parts.
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pysbd
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from course.content import DEFAULT_TARGET_WORDS
from course.content.article import Article
from course.content.blocks import (
    Block,
    Code,
    Heading,
    Paragraph,
    block_plain,
    block_words,
    count_words,
    inline_plain,
    join_pieces,
    map_inline,
    piece_separator,
)
from course.content.language import DEFAULT_ARTICLE_LANGUAGE, article_language

__all__ = [
    "DEFAULT_TARGET_WORDS",
    "LessonPlan",
    "continued_title",
    "count_words",
    "reading_length",
    "split_article",
    "sentence_cuts",
]

# Adult silent reading speed for non-fiction, in words per minute, and in characters per minute for
# the scripts written without spaces: Trauzettel-Klosinski et al., "Standardized assessment of
# reading performance: the new International Reading Speed Texts IReST" (2012), measured English at
# 228 words, Chinese at 255 and Japanese at 357 characters a minute.
READING_WORDS_PER_MINUTE = 230
CJK_CHARACTERS_PER_MINUTE = {"zh": 255, "ja": 357}
DEFAULT_CJK_CHARACTERS_PER_MINUTE = 255  # Han text in an article of another language
# Cost of starting a lesson at a given place, in units of the squared relative size deviation (0.25 is
# what a lesson at half, or one and a half times, the target costs). Before a top-level heading a cut
# is free; before a sub-heading nearly so; between two blocks of one section it has to save a clearly
# mis-sized lesson elsewhere; between two sentences of one paragraph it has to save even more.
SUBSECTION_CUT_COST = 0.05
MID_SECTION_CUT_COST = 0.25
MID_PARAGRAPH_CUT_COST = 0.5
# "<section heading> (continued)" titles a lesson that goes on with a section it does not start, in
# the article's language (course/locales/<language>/LC_MESSAGES/content.po; English without one).
CONTINUED_SUFFIX = " (continued)"
_CONTINUED = "%(section)s (continued)"
_LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
# pysbd's languages; anything else is cut with the English rules.
SENTENCE_LANGUAGES = frozenset(
    "en hi mr zh es am ar hy bg ur ru pl fa nl da fr my el it ja de kk sk".split()
)


@dataclass(frozen=True)
class LessonPlan:
    title: str  # plain text
    body: tuple[Block, ...]  # the article's blocks in this lesson, in order
    # Index in ``body`` of the heading the title was taken from: renderers leave it out, so the title
    # is never repeated as a heading of the lesson. None when the title is not one of its headings.
    title_heading: int | None = None
    language: str = field(default=DEFAULT_ARTICLE_LANGUAGE, compare=False)  # the article's

    @property
    def shown(self) -> tuple[Block, ...]:
        """The body as a reader sees it under the title: without the heading that gave the title."""
        return tuple(block for index, block in enumerate(self.body) if index != self.title_heading)

    @property
    def words(self) -> int:
        """Words a reader reads; headings are not counted."""
        return sum(block_words(block) for block in self.body)

    @property
    def length(self) -> float:
        """Reading time in words (see :func:`reading_length`); headings are not counted."""
        return sum(_block_length(block, self.language) for block in self.body)

    @property
    def reading_minutes(self) -> int:
        words, characters = 0, 0
        for block in self.body:
            if not isinstance(block, Heading):
                block_words_, block_characters = _script_counts(block_plain(block))
                words, characters = words + block_words_, characters + block_characters
        per_minute = _characters_per_minute(self.language)
        # Whole numbers, so that 357 Japanese characters are exactly one minute.
        total = words * per_minute + characters * READING_WORDS_PER_MINUTE
        return max(1, -(-total // (READING_WORDS_PER_MINUTE * per_minute)))


def _is_cjk_character(char: str) -> bool:
    """A letter of a script written without spaces: Han, Hiragana, Katakana (not Hangul, whose words
    are spaced)."""
    if not char.isalpha() or unicodedata.east_asian_width(char) not in ("W", "F"):
        return False
    return not ("\uac00" <= char <= "\ud7a3" or "\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f")


def _script_counts(text: str) -> tuple[int, int]:
    """(words, CJK characters) of ``text``: CJK letters are counted one by one, and a token that
    holds letters or digits outside them counts as a word ("味噌" is 2 characters, "Python3" a word,
    "90°C" a word)."""
    words = 0
    characters = 0
    for token in text.split():
        cjk = sum(1 for char in token if _is_cjk_character(char))
        characters += cjk
        if any(char.isalnum() and not _is_cjk_character(char) for char in token):
            words += 1
    return words, characters


def _characters_per_minute(language: str) -> int:
    return CJK_CHARACTERS_PER_MINUTE.get(language, DEFAULT_CJK_CHARACTERS_PER_MINUTE)


def reading_length(text: str, language: str = DEFAULT_ARTICLE_LANGUAGE) -> float:
    """The reading time of ``text`` expressed in words: words count one each, and Chinese or
    Japanese characters count ``READING_WORDS_PER_MINUTE / CJK_CHARACTERS_PER_MINUTE`` each (357
    Japanese characters read as long as 230 words)."""
    words, characters = _script_counts(text)
    return words + characters * READING_WORDS_PER_MINUTE / _characters_per_minute(language)


def _block_length(block: Block, language: str) -> float:
    return 0.0 if isinstance(block, Heading) else reading_length(block_plain(block), language)


@lru_cache(maxsize=None)
def _continued_catalogue(language: str) -> NullTranslations:
    path = _LOCALES_DIR / language / "LC_MESSAGES" / "content.po"
    if not re.fullmatch(r"[a-z]{2,3}", language) or not path.exists():
        return NullTranslations()
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def continued_title(section: str, language: str = DEFAULT_ARTICLE_LANGUAGE) -> str:
    """"<section> (continued)" in ``language`` ("Elegir el recipiente (continuación)"); English for a
    language without a catalogue."""
    return _continued_catalogue(language).gettext(_CONTINUED) % {"section": section}


@dataclass(frozen=True)
class _Unit:
    """The smallest piece a lesson is made of: one block with the headings above it, one sentence of
    an over-long paragraph, or a code block with the paragraphs that introduce and explain it."""

    blocks: tuple[Block, ...]
    length: float  # reading time in words
    start_cost: float  # what starting a lesson with this unit costs


# A footnote as the Markdown reader writes it at the end of the article: "\[2\] The note".
_NOTE_START = re.compile(r"\\\[(\d+)\\\] ")
_NOTE_MARKER = re.compile(r"(?<=\S)\\\[(\d+)\\\]")


def split_article(article: Article, target_words: int = DEFAULT_TARGET_WORDS, *, language: str | None = None) -> list[LessonPlan]:
    """Split ``article`` into lessons of about ``target_words`` words' reading time.

    1. The article's language is ``language`` when given, else detected
       (:func:`course.content.language.article_language`). Footnotes at the end of the article are
       set aside (:func:`_footnotes`).
    2. Cut the rest into units (:func:`_units`): each non-heading block with the headings directly
       above it, except that a paragraph longer than the target is one unit per sentence, and that a
       code block, its introduction and its explanation are one unit.
    3. A lesson is a run of consecutive units. A run is allowed when
       a) it is a single unit (so a list or table longer than the target is a lesson of its own), or
       b) none of its units alone exceeds the target, and it exceeds the target by at most one unit:
          ``length - largest unit <= target``.
       Every article therefore has at least one allowed split (one unit per lesson).
    4. Cost of a split = sum over lessons of ``((length - target) / target) ** 2``, plus the start
       cost of each lesson's first unit (free before a top-level heading, see the ``*_CUT_COST``
       constants).
    5. ``best[i]`` = cheapest split of the first ``i`` units; computed left to right, trying every
       allowed last lesson ``[j, i)``. Extending a run only adds length, so the search from ``i``
       backwards stops at the first run that is not allowed. Ties keep the earliest cut found, so the
       result is deterministic.
    6. Walk the cuts back from the end and build the lessons, titled by :func:`_titles`; each lesson
       gets the footnotes its markers refer to (:func:`_with_notes`).
    """
    if target_words < 1:
        raise ValueError(f"target_words must be a positive number of words, got {target_words}")
    language = language or article_language(article)
    blocks, notes = _footnotes(article.blocks)
    units = _units(blocks, target_words, language)
    count = len(units)
    if count == 0:
        return []

    best_cost = [0.0] + [math.inf] * count
    best_start = [0] * (count + 1)
    for end in range(1, count + 1):
        length = 0.0
        largest = 0.0
        for start in range(end - 1, -1, -1):
            length += units[start].length
            largest = max(largest, units[start].length)
            single = start == end - 1
            if not single and (largest > target_words or length - largest > target_words):
                break  # adding earlier units can only make the run longer
            start_cost = 0.0 if start == 0 else units[start].start_cost
            cost = best_cost[start] + ((length - target_words) / target_words) ** 2 + start_cost
            if cost < best_cost[end]:
                best_cost[end], best_start[end] = cost, start

    runs: list[tuple[int, int]] = []
    end = count
    while end > 0:
        runs.append((best_start[end], end))
        end = best_start[end]
    runs.reverse()
    bodies = [tuple(join_pieces(block for unit in units[start:end] for block in unit.blocks)) for start, end in runs]
    if notes:
        bodies = [_with_notes(body, notes) for body in bodies]
    return _titles(article.title, bodies, language)


def _footnotes(blocks: tuple[Block, ...]) -> tuple[tuple[Block, ...], dict[int, tuple[Block, ...]]]:
    """Set aside the article's footnotes: the run of blocks at its end that starts with a paragraph
    "\\[1\\] …" and goes on with "\\[2\\] …", "\\[3\\] …" (a note's further paragraphs follow it),
    when the text before refers to them. Returns the blocks before the notes and each note's blocks by
    number; no notes when the end of the article does not have that shape."""
    first = next(
        (
            index
            for index, block in enumerate(blocks)
            if isinstance(block, Paragraph) and (found := _NOTE_START.match(block.text)) and found.group(1) == "1"
        ),
        None,
    )
    if first is None:
        return blocks, {}
    notes: dict[int, list[Block]] = {}
    for block in blocks[first:]:
        if isinstance(block, Heading):
            return blocks, {}
        found = _NOTE_START.match(block.text) if isinstance(block, Paragraph) else None
        if found and int(found.group(1)) == len(notes) + 1:
            notes[len(notes) + 1] = [block]
        else:
            notes[len(notes)].append(block)
    body = blocks[:first]
    referred = {int(number) for block in body for text in _texts(block) for number in _NOTE_MARKER.findall(text)}
    if not referred or not referred <= set(notes):
        return blocks, {}
    return body, {number: tuple(note) for number, note in notes.items()}


def _texts(block: Block) -> list[str]:
    texts: list[str] = []
    map_inline(block, lambda text: texts.append(text) or text)
    return texts


def _with_notes(body: tuple[Block, ...], notes: dict[int, tuple[Block, ...]]) -> tuple[Block, ...]:
    """``body`` with its footnote markers numbered from 1 in the order they appear, and the notes
    they refer to, renumbered alike, at its end."""
    numbers: dict[int, int] = {}

    def renumber(text: str) -> str:
        def one(found: re.Match[str]) -> str:
            number = int(found.group(1))
            if number not in notes:
                return found.group(0)
            numbers.setdefault(number, len(numbers) + 1)
            return f"\\[{numbers[number]}\\]"

        return _NOTE_MARKER.sub(one, text)

    renumbered = [map_inline(block, renumber) for block in body]
    for old, new in numbers.items():
        note = notes[old]
        head = note[0]
        assert isinstance(head, Paragraph)
        renumbered.append(Paragraph(_NOTE_START.sub(f"\\\\[{new}\\\\] ", head.text, count=1)))
        renumbered.extend(note[1:])
    return tuple(renumbered)


def _units(blocks: tuple[Block, ...], target_words: int, language: str) -> list[_Unit]:
    headings = [block for block in blocks if isinstance(block, Heading)]
    top_level = min((heading.level for heading in headings), default=2)
    units: list[_Unit] = []
    # Per unit: does it go on with the section of the unit before (no heading of its own)?
    continues_section: list[bool] = []
    pending: list[Heading] = []
    for block in blocks:
        if isinstance(block, Heading):
            pending.append(block)
            continue
        if pending:
            start_cost = 0.0 if pending[0].level <= top_level else SUBSECTION_CUT_COST
        else:
            start_cost = MID_SECTION_CUT_COST
        length = _block_length(block, language)
        if isinstance(block, Paragraph) and length > target_words:
            pieces = sentence_cuts(block.text, language)
            for number, piece in enumerate(pieces):
                piece_block = Paragraph(piece, continues=block.continues if number == 0 else True)
                units.append(
                    _Unit(
                        blocks=(*pending, piece_block) if number == 0 else (piece_block,),
                        length=reading_length(inline_plain(piece), language),
                        start_cost=start_cost if number == 0 else MID_PARAGRAPH_CUT_COST,
                    )
                )
                continues_section.append(number > 0 or not pending)
        else:
            units.append(_Unit(blocks=(*pending, block), length=length, start_cost=start_cost))
            continues_section.append(not pending)
        pending = []
    if pending and units:
        # Headings at the very end have nothing under them; they stay with the last lesson.
        last = units[-1]
        units[-1] = _Unit(blocks=last.blocks + tuple(pending), length=last.length, start_cost=last.start_cost)
    return _code_with_its_paragraphs(units, continues_section, target_words)


def _code_with_its_paragraphs(units: list[_Unit], continues_section: list[bool], target_words: int) -> list[_Unit]:
    """Join each code block to the paragraph that introduces it and the one that explains it.

    1. The introduction is the paragraph directly before the code in the same section (it usually
       ends with a colon); the code's unit is joined to the unit that ends with it.
    2. The explanation is the paragraph directly after the code in the same section, unless the
       code alone is longer than the target (then it is a lesson of its own with its introduction),
       or the paragraph ends with a colon and introduces the next code block instead.
    A paragraph cut into sentences contributes the sentence next to the code.
    """
    joined: list[_Unit] = []
    joined_continues: list[bool] = []
    attach_next = False
    for index, unit in enumerate(units):
        last = unit.blocks[-1]
        is_code = isinstance(last, Code) and len(unit.blocks) >= 1
        if (
            is_code
            and continues_section[index]
            and joined
            and isinstance(joined[-1].blocks[-1], Paragraph)
        ):
            previous = joined.pop()
            unit = _Unit(previous.blocks + unit.blocks, previous.length + unit.length, previous.start_cost)
            continues_section[index] = joined_continues.pop()
        elif (
            attach_next
            and continues_section[index]
            and isinstance(unit.blocks[0], Paragraph)
            and len(unit.blocks) == 1
            and not _introduces_code(units, index)
        ):
            previous = joined.pop()
            joined_continues.pop()
            unit = _Unit(previous.blocks + unit.blocks, previous.length + unit.length, previous.start_cost)
            attach_next = False
            joined.append(unit)
            joined_continues.append(continues_section[index])
            continue
        attach_next = is_code and _block_length(last, "") <= target_words
        joined.append(unit)
        joined_continues.append(continues_section[index])
    return joined


def _introduces_code(units: list[_Unit], index: int) -> bool:
    """A paragraph ending with a colon directly before a code block introduces it."""
    paragraph = units[index].blocks[-1]
    following = units[index + 1] if index + 1 < len(units) else None
    return (
        isinstance(paragraph, Paragraph)
        and inline_plain(paragraph.text).rstrip().endswith((":", "："))
        and following is not None
        and isinstance(following.blocks[0], Code)
    )


def _titles(article_title: str, bodies: list[tuple[Block, ...]], language: str) -> list[LessonPlan]:
    """Title each lesson.

    1. An article that is one lesson is titled by the article.
    2. A lesson that starts with a heading is titled by it; that heading is then left out when the
       lesson is shown.
    3. A lesson that starts inside a section is "<that section> (continued)" in the article's
       language (:func:`continued_title`), using the innermost heading in force, even when it holds
       headings further down: its opening belongs to that section.
    4. The first lesson starts before any section (the lede): it is titled by the first heading it
       holds, or by the article when it holds none.
    """
    if len(bodies) == 1:
        return [LessonPlan(title=article_title, body=bodies[0], language=language)]
    lessons: list[LessonPlan] = []
    current_heading: str | None = None
    for body in bodies:
        first_heading = next((index for index, block in enumerate(body) if isinstance(block, Heading)), None)
        if first_heading is not None and (first_heading == 0 or current_heading is None):
            heading = body[first_heading]
            assert isinstance(heading, Heading)
            lessons.append(LessonPlan(inline_plain(heading.text), body, title_heading=first_heading, language=language))
        elif current_heading is not None:
            lessons.append(LessonPlan(continued_title(current_heading, language), body, language=language))
        else:
            lessons.append(LessonPlan(article_title, body, language=language))
        for block in body:
            if isinstance(block, Heading):
                current_heading = inline_plain(block.text)
    return lessons


# ---------------------------------------------------------------------------------------------------
# Sentences


@lru_cache(maxsize=32)
def _segmenter(language: str) -> pysbd.Segmenter:
    return pysbd.Segmenter(language=language if language in SENTENCE_LANGUAGES else "en", clean=False, char_span=True)


def sentence_cuts(text: str, language: str = "en") -> list[str]:
    """Cut a paragraph's inline Markdown into sentences, never inside one.

    1. pysbd finds the sentence boundaries of the text in ``language``.
    2. A boundary is kept only where the text has a space (none after a full-width "。"), and where cutting leaves both halves with
       the words they had: a boundary inside a link, emphasis or code span would change how the halves
       render, so it is skipped.
    3. The pieces joined with single spaces are exactly ``text`` (paragraph whitespace is canonical).
    """
    spans = _segmenter(language).segment(text)
    whole = inline_plain(text)
    has_markup = any(char in text for char in "\\[`*_~<!&")
    pieces: list[str] = []
    start = 0
    for span in spans[1:]:
        boundary = span.start
        if boundary <= start or boundary >= len(text):
            continue
        left = text[start:boundary].rstrip(" ")
        right = text[boundary:]
        if not left.strip() or not right.strip() or right[0].isspace() or left[0].isspace():
            continue
        if text[start:boundary] != left + piece_separator(left):
            continue  # the separator would not give the text back
        before = text[:boundary].rstrip(" ")
        if has_markup and inline_plain(before) + piece_separator(before) + inline_plain(right) != whole:
            continue
        pieces.append(left)
        start = boundary
    pieces.append(text[start:])
    return pieces
