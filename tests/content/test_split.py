"""Splitting articles into lessons: properties over generated articles, worked cases, the seed."""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course.content.article import Article, Section, load_article, parse_article
from course.content.split import DEFAULT_TARGET_WORDS, LessonBlock, LessonPlan, count_words, split_article
from tests.support.services import seed_article_path
from tests.support.content_fixtures import SEED_HEADINGS

def make_article(section_sizes: list[list[int]], *, lede: bool = True, title: str = "Bread") -> Article:
    """An article whose paragraph ``n`` is ``"pN"`` followed by filler: ``size`` words in all.

    The unique "pN" marker makes reordering or duplication visible in comparisons.
    """
    counter = iter(range(10_000))
    sections = tuple(
        Section(
            None if lede and index == 0 else f"Heading {index}",
            tuple(f"p{next(counter)} " + " ".join(["word"] * (size - 1)) for size in sizes),
        )
        for index, sizes in enumerate(section_sizes)
    )
    return Article(title=title, sections=sections, source="<test>")


def lesson_sizes(lessons: list[LessonPlan]) -> list[list[int]]:
    return [[count_words(paragraph) for paragraph in lesson.paragraphs] for lesson in lessons]


# --- properties ------------------------------------------------------------------------------------------

paragraph_sizes = st.integers(min_value=1, max_value=400)
sections_strategy = st.lists(st.lists(paragraph_sizes, min_size=0, max_size=8), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(section_sizes=sections_strategy, lede=st.booleans(), target=st.integers(min_value=1, max_value=700))
def test_split_loses_reorders_and_repeats_nothing(section_sizes: list[list[int]], lede: bool, target: int) -> None:
    article = make_article(section_sizes, lede=lede)
    lessons = split_article(article, target)
    assert [paragraph for lesson in lessons for paragraph in lesson.paragraphs] == list(article.paragraphs)


@settings(max_examples=300, deadline=None)
@given(section_sizes=sections_strategy, lede=st.booleans(), target=st.integers(min_value=1, max_value=700))
def test_lessons_are_non_empty_and_exceed_the_target_by_at_most_one_paragraph(
    section_sizes: list[list[int]], lede: bool, target: int
) -> None:
    lessons = split_article(make_article(section_sizes, lede=lede), target)
    for lesson in lessons:
        sizes = [count_words(paragraph) for paragraph in lesson.paragraphs]
        assert sizes, "empty lesson"
        assert all(block.paragraphs for block in lesson.blocks), "empty block"
        assert lesson.words == sum(sizes)
        if len(sizes) > 1:
            # Only a single paragraph may be longer than the target, and only alone.
            assert max(sizes) <= target
            assert lesson.words - max(sizes) <= target


@settings(max_examples=300, deadline=None)
@given(section_sizes=sections_strategy, lede=st.booleans(), target=st.integers(min_value=1, max_value=700))
def test_every_heading_appears_once_and_titles_follow_the_rule(
    section_sizes: list[list[int]], lede: bool, target: int
) -> None:
    article = make_article(section_sizes, lede=lede, title="Bread")
    lessons = split_article(article, target)
    first_paragraph_heading = {
        section.paragraphs[0]: section.heading for section in article.sections if section.paragraphs
    }
    block_headings = [block.heading for lesson in lessons for block in lesson.blocks if block.heading]
    assert block_headings == [heading for heading in first_paragraph_heading.values() if heading]
    for part_number, lesson in enumerate(lessons, start=1):
        for block in lesson.blocks:
            # A block is headed exactly when it opens its section.
            assert block.heading == first_paragraph_heading.get(block.paragraphs[0])
        expected_title = lesson.blocks[0].heading or f"Bread — Part {part_number}"
        assert lesson.title == expected_title


# --- worked cases ----------------------------------------------------------------------------------------


def test_short_sections_are_merged_into_one_lesson_keeping_their_headings() -> None:
    article = make_article([[60], [80, 40], [70], [50]], lede=False)
    [lesson] = split_article(article, 300)
    assert lesson.title == "Heading 0"
    assert [block.heading for block in lesson.blocks] == ["Heading 0", "Heading 1", "Heading 2", "Heading 3"]


def test_over_long_section_is_split_into_balanced_parts() -> None:
    article = make_article([[70] * 10], lede=False)
    lessons = split_article(article, 300)
    assert lesson_sizes(lessons) == [[70] * 5, [70] * 5]
    assert [lesson.title for lesson in lessons] == ["Heading 0", "Bread — Part 2"]
    assert lessons[1].blocks == (LessonBlock(None, lessons[1].paragraphs),)


def test_no_tiny_tail_where_a_greedy_split_would_leave_one() -> None:
    # Greedy filling to 300 words would give 3 + 3 + 1 paragraphs.
    lessons = split_article(make_article([[100] * 7], lede=False), 300)
    assert len(lessons) == 2
    assert min(lesson.words for lesson in lessons) >= 150


def test_paragraph_longer_than_the_target_is_a_lesson_of_its_own() -> None:
    lessons = split_article(make_article([[50, 500, 60]], lede=False), 300)
    assert lesson_sizes(lessons) == [[50], [500], [60]]
    assert [lesson.title for lesson in lessons] == ["Heading 0", "Bread — Part 2", "Bread — Part 3"]


def test_cuts_at_section_boundaries_when_they_balance_as_well() -> None:
    article = make_article([[150, 150], [150, 150]], lede=False)
    assert [lesson.title for lesson in split_article(article, 300)] == ["Heading 0", "Heading 1"]


def test_prefers_a_section_boundary_over_a_slightly_better_balanced_mid_section_cut() -> None:
    # Cutting inside the second section would give two lessons of exactly 300 words; cutting at the
    # boundary gives 240 and 360, which is close enough to keep the section whole.
    lessons = split_article(make_article([[240], [60, 240, 60]], lede=False), 300)
    assert lesson_sizes(lessons) == [[240], [60, 240, 60]]
    assert [lesson.title for lesson in lessons] == ["Heading 0", "Heading 1"]


def test_lede_lesson_is_titled_as_part_one() -> None:
    lessons = split_article(make_article([[280], [290]], lede=True), 300)
    assert [lesson.title for lesson in lessons] == ["Bread — Part 1", "Heading 1"]


def test_markdown_heading_without_paragraphs_is_skipped() -> None:
    article = parse_article("# T\n\nLede.\n\n## Empty\n\n## Full\n\nBody.\n", source="x.md")
    lessons = split_article(article, 300)
    assert [block.heading for lesson in lessons for block in lesson.blocks] == [None, "Full"]


def test_target_must_be_positive() -> None:
    with pytest.raises(ValueError, match="target_words"):
        split_article(make_article([[10]]), 0)


def test_count_words_ignores_dashes_and_keeps_hyphenated_words_whole() -> None:
    assert count_words("skin-to-skin — it's  calm\n- yes") == 4
    assert count_words("") == 0


@pytest.mark.parametrize(("words", "minutes"), [(1, 1), (230, 1), (231, 2), (700, 4)])
def test_reading_minutes_round_up_and_are_at_least_one(words: int, minutes: int) -> None:
    plan = LessonPlan("T", (LessonBlock(None, (" ".join(["w"] * words),)),))
    assert plan.words == words
    assert plan.reading_minutes == minutes


# --- the seed article ------------------------------------------------------------------------------------


def test_seed_article_splits_into_sensible_lessons_with_every_heading() -> None:
    article = load_article(seed_article_path())
    lessons = split_article(article)
    total_words = sum(count_words(paragraph) for paragraph in article.paragraphs)

    assert len(lessons) >= max(2, round(total_words / DEFAULT_TARGET_WORDS))
    assert [p for lesson in lessons for p in lesson.paragraphs] == list(article.paragraphs)
    assert [block.heading for lesson in lessons for block in lesson.blocks if block.heading] == SEED_HEADINGS
    assert lessons[0].blocks[0].heading is None  # the lede opens the first lesson
    assert lessons[0].title == f"{article.title} — Part 1"
    for lesson in lessons:
        assert DEFAULT_TARGET_WORDS / 2 <= lesson.words <= DEFAULT_TARGET_WORDS * 1.5
        # The seed's sections are short, so every cut falls on a section boundary.
        assert lesson.blocks[0].heading is not None or lesson is lessons[0]


def test_seed_article_with_a_small_target_gives_more_lessons() -> None:
    article = load_article(seed_article_path())
    small = split_article(article, 120)
    assert len(small) > len(split_article(article))
    assert [p for lesson in small for p in lesson.paragraphs] == list(article.paragraphs)
