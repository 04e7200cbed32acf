"""Split an article into drip lessons of about ``target_words`` words each.

The split is a small optimisation problem solved exactly by dynamic programming over the gaps between
paragraphs (see :func:`split_article`), rather than a greedy walk: a greedy walk leaves tiny tails
("…— Part 4" with one sentence in it) that the optimisation avoids by balancing the parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from course.content.article import Article

DEFAULT_TARGET_WORDS = 300
# Adult silent reading speed for non-fiction, in words per minute.
READING_WORDS_PER_MINUTE = 230
# Cost of cutting a lesson in the middle of a section, in units of the squared relative size
# deviation: 0.25 is what a lesson at half (or one and a half times) the target costs. So a section
# is only cut when that saves more than a clearly mis-sized lesson elsewhere.
MID_SECTION_CUT_COST = 0.25


@dataclass(frozen=True)
class LessonBlock:
    # Section heading shown above these paragraphs; None when the block continues a section that
    # started in an earlier lesson, or is the lede.
    heading: str | None
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class LessonPlan:
    title: str
    blocks: tuple[LessonBlock, ...]

    @property
    def paragraphs(self) -> tuple[str, ...]:
        return tuple(paragraph for block in self.blocks for paragraph in block.paragraphs)

    @property
    def words(self) -> int:
        """Words in the paragraphs; headings are not counted."""
        return sum(count_words(paragraph) for paragraph in self.paragraphs)

    @property
    def reading_minutes(self) -> int:
        return max(1, math.ceil(self.words / READING_WORDS_PER_MINUTE))


def count_words(text: str) -> int:
    """Whitespace-separated tokens that contain a letter or digit.

    "skin-to-skin" and "it's" are one word each; a lone dash or bullet is none.
    """
    return sum(1 for token in text.split() if any(char.isalnum() for char in token))


@dataclass(frozen=True)
class _Paragraph:
    text: str
    words: int
    section_index: int
    starts_section: bool  # first paragraph of its section
    heading: str | None  # its section's heading


def split_article(article: Article, target_words: int = DEFAULT_TARGET_WORDS) -> list[LessonPlan]:
    """Split ``article`` into lessons, cutting only between paragraphs.

    1. Flatten the sections into paragraphs, remembering each one's section and whether it opens it.
       Sections without paragraphs (a Markdown heading directly followed by another) are skipped:
       there is nothing to put under their heading.
    2. A lesson is a run of consecutive paragraphs. A run is allowed when
       a) it is a single paragraph (so a paragraph longer than the target is a lesson of its own), or
       b) none of its paragraphs alone exceeds the target, and it exceeds the target by at most one
          paragraph: ``words - largest paragraph <= target``.
       Every article therefore has at least one allowed split (one paragraph per lesson).
    3. Cost of a split = sum over lessons of ``((words - target) / target) ** 2``, plus
       ``MID_SECTION_CUT_COST`` for every cut that is not at a section boundary. Short sections are
       merged because one lesson near the target is cheaper than two small ones; an over-long section
       is cut into balanced parts because the squared deviation punishes a tiny tail.
    4. ``best[i]`` = cheapest split of the first ``i`` paragraphs; computed left to right, trying every
       allowed last lesson ``[j, i)``. Extending a run only adds words, so the search from ``i``
       backwards stops at the first run that is not allowed. Ties keep the earliest cut found, so the
       result is deterministic.
    5. Walk the cuts back from the end and build the lessons (see :func:`_build_lesson`).
    """
    if target_words < 1:
        raise ValueError(f"target_words must be a positive number of words, got {target_words}")
    paragraphs = [
        _Paragraph(text, count_words(text), section_index, position == 0, section.heading)
        for section_index, section in enumerate(article.sections)
        for position, text in enumerate(section.paragraphs)
    ]
    count = len(paragraphs)
    if count == 0:
        return []

    best_cost = [0.0] + [math.inf] * count
    best_start = [0] * (count + 1)  # start index of the last lesson in best split of first i
    for end in range(1, count + 1):
        words = 0
        largest = 0
        for start in range(end - 1, -1, -1):
            words += paragraphs[start].words
            largest = max(largest, paragraphs[start].words)
            single = start == end - 1
            if not single and (largest > target_words or words - largest > target_words):
                break  # adding earlier paragraphs can only make the run longer
            cut_cost = 0.0 if start == 0 or paragraphs[start].starts_section else MID_SECTION_CUT_COST
            cost = best_cost[start] + ((words - target_words) / target_words) ** 2 + cut_cost
            if cost < best_cost[end]:
                best_cost[end], best_start[end] = cost, start

    runs: list[tuple[int, int]] = []
    end = count
    while end > 0:
        runs.append((best_start[end], end))
        end = best_start[end]
    runs.reverse()
    return [
        _build_lesson(article.title, paragraphs[start:end], part_number)
        for part_number, (start, end) in enumerate(runs, start=1)
    ]


def _build_lesson(article_title: str, run: list[_Paragraph], part_number: int) -> LessonPlan:
    """Group a run of paragraphs into blocks by section and pick the lesson's title.

    A block carries its section's heading only when it opens the section; a block continuing a section
    begun in the previous lesson has none. The lesson is titled with its first block's heading when it
    has one, else "<article title> — Part N" (N counts all lessons of the article, from 1).
    """
    blocks: list[LessonBlock] = []
    group: list[_Paragraph] = []
    for paragraph in run:
        if group and paragraph.section_index != group[0].section_index:
            blocks.append(_block(group))
            group = []
        group.append(paragraph)
    blocks.append(_block(group))
    title = blocks[0].heading or f"{article_title} — Part {part_number}"
    return LessonPlan(title=title, blocks=tuple(blocks))


def _block(group: list[_Paragraph]) -> LessonBlock:
    heading = group[0].heading if group[0].starts_section else None
    return LessonBlock(heading=heading, paragraphs=tuple(paragraph.text for paragraph in group))
