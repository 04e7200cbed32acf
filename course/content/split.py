"""Split an article into drip lessons of about ``target_words`` words each.

Lessons are cut between blocks only — never inside a list, a table, a quote or a code block — and
preferably before a heading. A paragraph longer than a whole lesson is the one exception: it is cut
between two of its sentences (found with pysbd, in the article's language), never inside one.

The split is a small optimisation problem solved exactly by dynamic programming over the places a
cut may go (see :func:`split_article`), rather than a greedy walk: a greedy walk leaves tiny tails
that the optimisation avoids by balancing the parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import pysbd

from course.content.article import Article
from course.content.blocks import (
    Block,
    Heading,
    Paragraph,
    block_words,
    count_words,
    inline_plain,
    join_pieces,
    piece_separator,
)

__all__ = ["DEFAULT_TARGET_WORDS", "LessonPlan", "count_words", "split_article", "sentence_cuts"]

DEFAULT_TARGET_WORDS = 300
# Adult silent reading speed for non-fiction, in words per minute.
READING_WORDS_PER_MINUTE = 230
# Cost of starting a lesson at a given place, in units of the squared relative size deviation (0.25 is
# what a lesson at half, or one and a half times, the target costs). Before a top-level heading a cut
# is free; before a sub-heading nearly so; between two blocks of one section it has to save a clearly
# mis-sized lesson elsewhere; between two sentences of one paragraph it has to save even more.
SUBSECTION_CUT_COST = 0.05
MID_SECTION_CUT_COST = 0.25
MID_PARAGRAPH_CUT_COST = 0.5
# "<section heading> (continued)" titles a lesson that goes on with a section and holds no heading.
CONTINUED_SUFFIX = " (continued)"
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

    @property
    def shown(self) -> tuple[Block, ...]:
        """The body as a reader sees it under the title: without the heading that gave the title."""
        return tuple(block for index, block in enumerate(self.body) if index != self.title_heading)

    @property
    def words(self) -> int:
        """Words a reader reads; headings are not counted."""
        return sum(block_words(block) for block in self.body)

    @property
    def reading_minutes(self) -> int:
        return max(1, math.ceil(self.words / READING_WORDS_PER_MINUTE))


@dataclass(frozen=True)
class _Unit:
    """The smallest piece a lesson is made of: one block with the headings above it, or one sentence
    of an over-long paragraph."""

    blocks: tuple[Block, ...]
    words: int
    start_cost: float  # what starting a lesson with this unit costs


def split_article(article: Article, target_words: int = DEFAULT_TARGET_WORDS, *, language: str = "en") -> list[LessonPlan]:
    """Split ``article`` into lessons of about ``target_words`` words.

    1. Cut the article into units (:func:`_units`): each non-heading block with the headings directly
       above it, except that a paragraph longer than the target is one unit per sentence.
    2. A lesson is a run of consecutive units. A run is allowed when
       a) it is a single unit (so a list or table longer than the target is a lesson of its own), or
       b) none of its units alone exceeds the target, and it exceeds the target by at most one unit:
          ``words - largest unit <= target``.
       Every article therefore has at least one allowed split (one unit per lesson).
    3. Cost of a split = sum over lessons of ``((words - target) / target) ** 2``, plus the start cost
       of each lesson's first unit (free before a top-level heading, see the ``*_CUT_COST`` constants).
    4. ``best[i]`` = cheapest split of the first ``i`` units; computed left to right, trying every
       allowed last lesson ``[j, i)``. Extending a run only adds words, so the search from ``i``
       backwards stops at the first run that is not allowed. Ties keep the earliest cut found, so the
       result is deterministic.
    5. Walk the cuts back from the end and build the lessons, titled by :func:`_titles`.
    """
    if target_words < 1:
        raise ValueError(f"target_words must be a positive number of words, got {target_words}")
    units = _units(article, target_words, language)
    count = len(units)
    if count == 0:
        return []

    best_cost = [0.0] + [math.inf] * count
    best_start = [0] * (count + 1)
    for end in range(1, count + 1):
        words = 0
        largest = 0
        for start in range(end - 1, -1, -1):
            words += units[start].words
            largest = max(largest, units[start].words)
            single = start == end - 1
            if not single and (largest > target_words or words - largest > target_words):
                break  # adding earlier units can only make the run longer
            start_cost = 0.0 if start == 0 else units[start].start_cost
            cost = best_cost[start] + ((words - target_words) / target_words) ** 2 + start_cost
            if cost < best_cost[end]:
                best_cost[end], best_start[end] = cost, start

    runs: list[tuple[int, int]] = []
    end = count
    while end > 0:
        runs.append((best_start[end], end))
        end = best_start[end]
    runs.reverse()
    bodies = [tuple(join_pieces(block for unit in units[start:end] for block in unit.blocks)) for start, end in runs]
    return _titles(article.title, bodies)


def _units(article: Article, target_words: int, language: str) -> list[_Unit]:
    headings = [block for block in article.blocks if isinstance(block, Heading)]
    top_level = min((heading.level for heading in headings), default=2)
    units: list[_Unit] = []
    pending: list[Heading] = []
    for block in article.blocks:
        if isinstance(block, Heading):
            pending.append(block)
            continue
        if pending:
            start_cost = 0.0 if pending[0].level <= top_level else SUBSECTION_CUT_COST
        else:
            start_cost = MID_SECTION_CUT_COST
        words = block_words(block)
        if isinstance(block, Paragraph) and words > target_words:
            pieces = sentence_cuts(block.text, language)
            for number, piece in enumerate(pieces):
                piece_block = Paragraph(piece, continues=block.continues if number == 0 else True)
                units.append(
                    _Unit(
                        blocks=(*pending, piece_block) if number == 0 else (piece_block,),
                        words=count_words(inline_plain(piece)),
                        start_cost=start_cost if number == 0 else MID_PARAGRAPH_CUT_COST,
                    )
                )
        else:
            units.append(_Unit(blocks=(*pending, block), words=words, start_cost=start_cost))
        pending = []
    if pending and units:
        # Headings at the very end have nothing under them; they stay with the last lesson.
        last = units[-1]
        units[-1] = _Unit(blocks=last.blocks + tuple(pending), words=last.words, start_cost=last.start_cost)
    return units


def _titles(article_title: str, bodies: list[tuple[Block, ...]]) -> list[LessonPlan]:
    """Title each lesson.

    1. An article that is one lesson is titled by the article.
    2. Otherwise a lesson is titled by the first heading it holds (so the lede lesson by the first
       section heading); that heading is then left out when the lesson is shown.
    3. A lesson without a heading that goes on with a section is "<section heading> (continued)",
       using the innermost heading in force.
    4. A lesson without a heading before any section (a long lede) is titled by the article.
    """
    if len(bodies) == 1:
        return [LessonPlan(title=article_title, body=bodies[0])]
    lessons: list[LessonPlan] = []
    current_heading: str | None = None
    for body in bodies:
        first_heading = next((index for index, block in enumerate(body) if isinstance(block, Heading)), None)
        if first_heading is not None:
            heading = body[first_heading]
            assert isinstance(heading, Heading)
            lessons.append(LessonPlan(inline_plain(heading.text), body, title_heading=first_heading))
        elif current_heading is not None:
            lessons.append(LessonPlan(current_heading + CONTINUED_SUFFIX, body))
        else:
            lessons.append(LessonPlan(article_title, body))
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
