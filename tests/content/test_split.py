"""Splitting articles into lessons: properties over generated articles, worked cases, the seed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course.content.article import Article, load_article, parse_article
from course.content.blocks import (
    Block,
    Code,
    Heading,
    ListBlock,
    Paragraph,
    Table,
    block_plain,
    block_words,
    join_pieces,
)
from course.content.split import (
    CONTINUED_SUFFIX,
    DEFAULT_TARGET_WORDS,
    LessonPlan,
    count_words,
    sentence_cuts,
    split_article,
)
from tests.support.content_fixtures import SEED_HEADINGS
from tests.support.services import seed_article_path

counter = iter(range(1_000_000))


def paragraph(*sentence_sizes: int) -> Paragraph:
    """A paragraph of sentences "pN wN … ." of the given sizes: the markers make loss or reordering visible."""
    sentences = []
    for size in sentence_sizes:
        marker = next(counter)
        sentences.append(" ".join([f"s{marker}"] + ["word"] * (size - 1)) + ".")
    return Paragraph(" ".join(sentences))


def words_of(blocks: list[Block] | tuple[Block, ...]) -> list[str]:
    return " ".join(block_plain(block) for block in blocks).split()


# --- generated articles -------------------------------------------------------------------------------------

sentence_sizes = st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=12)


@st.composite
def body_blocks(draw: st.DrawFn) -> Block:
    kind = draw(st.sampled_from(["paragraph", "paragraph", "paragraph", "list", "table", "code"]))
    if kind == "paragraph":
        return paragraph(*draw(sentence_sizes))
    if kind == "list":
        items = draw(st.lists(sentence_sizes, min_size=1, max_size=5))
        return ListBlock(ordered=draw(st.booleans()), items=tuple((paragraph(*sizes),) for sizes in items))
    if kind == "table":
        rows = draw(st.integers(min_value=1, max_value=6))
        return Table(header=("a", "b"), rows=tuple((f"r{next(counter)}", "cell words here") for _ in range(rows)))
    lines = draw(st.integers(min_value=1, max_value=20))
    return Code(text="\n".join(f"step_{next(counter)}()" for _ in range(lines)), language="python")


@st.composite
def articles(draw: st.DrawFn) -> Article:
    blocks: list[Block] = []
    if draw(st.booleans()):
        blocks.extend(draw(st.lists(body_blocks(), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(min_value=0 if blocks else 1, max_value=6))):
        level = draw(st.sampled_from([2, 2, 3]))
        blocks.append(Heading(f"Heading {next(counter)}", level))
        blocks.extend(draw(st.lists(body_blocks(), min_size=0, max_size=5)))
    if not any(not isinstance(block, Heading) for block in blocks):
        blocks.append(paragraph(5))
    return Article(title="Bread", blocks=tuple(blocks), source="<test>")


targets = st.integers(min_value=5, max_value=500)


@settings(max_examples=100, deadline=None)
@given(article=articles(), target=targets)
def test_lessons_joined_are_exactly_the_articles_blocks(article: Article, target: int) -> None:
    lessons = split_article(article, target)
    joined = join_pieces(block for lesson in lessons for block in lesson.body)
    assert joined == list(article.blocks)
    # So no word is lost, repeated or reordered either.
    assert words_of([block for lesson in lessons for block in lesson.body]) == words_of(article.blocks)


@settings(max_examples=100, deadline=None)
@given(article=articles(), target=targets)
def test_cuts_fall_between_blocks_or_between_sentences_only(article: Article, target: int) -> None:
    lessons = split_article(article, target)
    originals = set(article.blocks)
    for lesson in lessons:
        assert lesson.body, "empty lesson"
        assert any(not isinstance(block, Heading) for block in lesson.body), "a lesson of headings only"
        for block in lesson.body:
            if isinstance(block, Paragraph) and block not in originals:
                # A piece of a paragraph cut between sentences: whole sentences, and only of a
                # paragraph that was longer than the target.
                assert block.text.endswith(".") and not block.text.startswith(" ")
                [source] = [
                    original
                    for original in article.blocks
                    if isinstance(original, Paragraph) and block.text in original.text
                ][:1] or [None]
                assert source is not None and block_words(source) > target
            else:
                # Lists, tables and code blocks are never cut.
                assert block in originals


@settings(max_examples=100, deadline=None)
@given(article=articles(), target=targets)
def test_lessons_exceed_the_target_only_by_one_unit(article: Article, target: int) -> None:
    for lesson in split_article(article, target):
        units = [block_words(block) for block in lesson.body if not isinstance(block, Heading)]
        if len(units) > 1 and max(units) <= target:
            # Sentence pieces of one paragraph are counted as one block here, so this is a bound.
            assert lesson.words - max(units) <= target or any(
                isinstance(block, Paragraph) and block_words(block) > target for block in lesson.body
            )


@settings(max_examples=100, deadline=None)
@given(article=articles(), target=targets)
def test_titles_come_from_headings_never_part_n_and_are_not_repeated(article: Article, target: int) -> None:
    lessons = split_article(article, target)
    if len(lessons) == 1:
        assert lessons[0].title == "Bread" and lessons[0].title_heading is None
        return
    current: str | None = None
    for lesson in lessons:
        assert not re.search(r"Part \d", lesson.title)
        headings = [index for index, block in enumerate(lesson.body) if isinstance(block, Heading)]
        if headings and (headings[0] == 0 or current is None):
            first = lesson.body[headings[0]]
            assert isinstance(first, Heading)
            assert lesson.title == first.text and lesson.title_heading == headings[0]
            # The heading that gave the title is not shown, so it never sits under the title.
            shown_headings = [block.text for block in lesson.shown if isinstance(block, Heading)]
            assert shown_headings[:1] != [lesson.title]
        elif current is not None:
            assert lesson.title == current + CONTINUED_SUFFIX
        else:
            assert lesson.title == "Bread"
        for block in lesson.body:
            if isinstance(block, Heading):
                current = block.text


# --- worked cases ----------------------------------------------------------------------------------------


def sections(*sizes: list[int], lede: list[int] | None = None) -> Article:
    """An article of one-sentence paragraphs: ``sizes[i]`` are the paragraph sizes of section i."""
    blocks: list[Block] = [paragraph(size) for size in lede or []]
    for index, section in enumerate(sizes):
        blocks.append(Heading(f"Heading {index}", 2))
        blocks.extend(paragraph(size) for size in section)
    return Article(title="Bread", blocks=tuple(blocks), source="<test>")


def lesson_sizes(lessons: list[LessonPlan]) -> list[list[int]]:
    return [[block_words(block) for block in lesson.body if not isinstance(block, Heading)] for lesson in lessons]


def test_short_sections_are_merged_into_one_lesson_keeping_their_headings() -> None:
    [lesson] = split_article(sections([60], [80, 40], [70], [50]), 300)
    assert lesson.title == "Bread"  # one lesson: the article's title, and every heading shown
    assert [block.text for block in lesson.shown if isinstance(block, Heading)] == [f"Heading {i}" for i in range(4)]


def test_over_long_section_is_split_into_balanced_parts_titled_continued() -> None:
    lessons = split_article(sections([70] * 10), 300)
    assert lesson_sizes(lessons) == [[70] * 5, [70] * 5]
    assert [lesson.title for lesson in lessons] == ["Heading 0", "Heading 0 (continued)"]


def test_no_tiny_tail_where_a_greedy_split_would_leave_one() -> None:
    lessons = split_article(sections([100] * 7), 300)
    assert len(lessons) == 2
    assert min(lesson.words for lesson in lessons) >= 150


def test_cuts_at_section_boundaries_when_they_balance_as_well() -> None:
    lessons = split_article(sections([150, 150], [150, 150]), 300)
    assert [lesson.title for lesson in lessons] == ["Heading 0", "Heading 1"]
    # The title heading is left out of what is shown.
    assert all(not isinstance(lesson.shown[0], Heading) for lesson in lessons)


def test_prefers_a_section_boundary_over_a_slightly_better_balanced_mid_section_cut() -> None:
    lessons = split_article(sections([240], [60, 240, 60]), 300)
    assert lesson_sizes(lessons) == [[240], [60, 240, 60]]


def test_lede_lesson_is_titled_by_its_first_section_heading() -> None:
    lessons = split_article(sections([200], [290], lede=[80]), 300)
    assert [lesson.title for lesson in lessons] == ["Heading 0", "Heading 1"]
    assert isinstance(lessons[0].body[0], Paragraph) and lessons[0].title_heading == 1


def test_a_long_lede_alone_is_titled_by_the_article() -> None:
    lessons = split_article(sections([280], lede=[290]), 300)
    assert [lesson.title for lesson in lessons] == ["Bread", "Heading 0"]


def test_one_lesson_article_is_titled_by_the_article_not_part_one() -> None:
    [lesson] = split_article(sections([40], [50], lede=[30]), 300)
    assert lesson.title == "Bread" and lesson.shown == lesson.body


def test_a_paragraph_longer_than_the_target_is_cut_between_sentences() -> None:
    long_paragraph = paragraph(*[20] * 45)  # 900 words in one paragraph
    article = Article("Bread", (Heading("Only", 2), long_paragraph), "<test>")
    lessons = split_article(article, 150)
    assert len(lessons) == 6
    assert all(130 <= lesson.words <= 170 for lesson in lessons)
    assert [lesson.title for lesson in lessons] == ["Only"] + ["Only (continued)"] * 5
    assert join_pieces(block for lesson in lessons for block in lesson.body) == list(article.blocks)


def test_a_list_longer_than_the_target_stays_whole() -> None:
    big_list = ListBlock(ordered=True, items=tuple((paragraph(30),) for _ in range(10)))
    article = Article("Bread", (paragraph(100), Heading("Steps", 2), big_list, paragraph(100)), "<test>")
    lessons = split_article(article, 150)
    assert sum(1 for lesson in lessons for block in lesson.body if block == big_list) == 1


def test_markdown_heading_directly_followed_by_a_subheading_keeps_both_with_levels() -> None:
    article = parse_article("# T\n\nLede.\n\n## Empty\n### Sub\n\nBody.\n", source="x.md")
    [lesson] = split_article(article, 300)
    assert [(block.text, block.level) for block in lesson.body if isinstance(block, Heading)] == [
        ("Empty", 2),
        ("Sub", 3),
    ]


def test_target_must_be_positive() -> None:
    with pytest.raises(ValueError, match="target_words"):
        split_article(sections([10]), 0)


def test_count_words_ignores_dashes_and_keeps_hyphenated_words_whole() -> None:
    assert count_words("skin-to-skin — it's  calm\n- yes") == 4
    assert count_words("") == 0


@pytest.mark.parametrize(("words", "minutes"), [(1, 1), (230, 1), (231, 2), (700, 4)])
def test_reading_minutes_round_up_and_are_at_least_one(words: int, minutes: int) -> None:
    plan = LessonPlan("T", (Paragraph(" ".join(["w"] * words)),))
    assert plan.words == words
    assert plan.reading_minutes == minutes


# --- sentences ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        (
            "en",
            "Dr. Lee said it works. See [our guide. It is here](https://x.example/a.b) now! Is *this. Really* so?",
            ["Dr. Lee said it works.", "See [our guide. It is here](https://x.example/a.b) now!", "Is *this. Really* so?"],
        ),
        ("de", "Das ist z. B. ein Satz. Am 3. März kam der zweite! Dritter Satz.", ["Das ist z. B. ein Satz.", "Am 3. März kam der zweite!", "Dritter Satz."]),
        ("fr", "M. Dupont arrive à 9 h. Il repart ensuite. Fin.", ["M. Dupont arrive à 9 h.", "Il repart ensuite.", "Fin."]),
        ("ja", "これは文です。これも文です。", ["これは文です。", "これも文です。"]),
    ],
)
def test_sentence_cuts_never_cut_inside_a_sentence_a_link_or_emphasis(language: str, text: str, expected: list[str]) -> None:
    pieces = sentence_cuts(text, language)
    assert pieces == expected
    rejoined = join_pieces([Paragraph(pieces[0])] + [Paragraph(piece, continues=True) for piece in pieces[1:]])
    assert rejoined == [Paragraph(text)]


# --- the seed article ------------------------------------------------------------------------------------


def test_seed_article_splits_into_sensible_lessons_titled_by_their_headings() -> None:
    article = load_article(seed_article_path())
    lessons = split_article(article)
    total_words = sum(block_words(block) for block in article.blocks)

    assert len(lessons) >= max(2, round(total_words / DEFAULT_TARGET_WORDS))
    assert join_pieces(block for lesson in lessons for block in lesson.body) == list(article.blocks)
    assert [block.text for lesson in lessons for block in lesson.body if isinstance(block, Heading)] == SEED_HEADINGS
    assert isinstance(lessons[0].body[0], Paragraph)  # the lede opens the first lesson
    assert lessons[0].title == SEED_HEADINGS[0]  # titled by its first section heading, not "Part 1"
    for lesson in lessons:
        assert DEFAULT_TARGET_WORDS / 2 <= lesson.words <= DEFAULT_TARGET_WORDS * 1.5
        assert lesson.title in SEED_HEADINGS


def test_seed_article_with_a_small_target_gives_more_lessons() -> None:
    article = load_article(seed_article_path())
    small = split_article(article, 120)
    assert len(small) > len(split_article(article))
    assert join_pieces(block for lesson in small for block in lesson.body) == list(article.blocks)
