"""Articles of the shapes publishers write, end to end through reading and splitting: every word and
block kept, lessons titled by their headings (never "Part N"), no title repeated under itself."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from course.content.article import Article, load_article, parse_article
from course.content.blocks import Heading, Paragraph, block_plain, join_pieces
from course.content.split import CONTINUED_SUFFIX, split_article

DATA = Path(__file__).parent / "data"
WORDS = (
    "flour water salt starter dough crumb crust oven loaf proof rise fold shape bake rest jar warm cool "
    "bubble yeast rye wheat bowl bench knife steam lid tin slice toast butter morning evening"
).split()


def sentences(count: int, rng: random.Random) -> str:
    out = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def generated(shape: str) -> Article:
    rng = random.Random(shape)
    if shape == "3000-words":
        parts = ["# A Long Read", sentences(6, rng)]
        for number in range(1, 13):
            parts.append(f"## Part of the Process {number}")
            parts += [sentences(rng.randint(3, 7), rng) for _ in range(3)]
            if number % 4 == 0:
                parts.append("### A Closer Look\n\n" + sentences(4, rng))
        text = "\n\n".join(parts)
    elif shape == "150-words":
        text = "# A Short Note\n\n" + sentences(6, rng) + "\n\n## Why It Matters\n\n" + sentences(5, rng)
    elif shape == "heading-every-40-words":
        text = "# Many Small Sections\n\n" + "\n\n".join(
            f"## Step {number}\n\n" + sentences(3, rng) for number in range(1, 30)
        )
    elif shape == "900-word-paragraph":
        text = "# One Long Paragraph\n\n## The Whole Story\n\n" + sentences(75, rng) + "\n\n## After\n\n" + sentences(3, rng)
    else:
        raise ValueError(shape)
    return parse_article(text, source=f"{shape}.md")


def files() -> list[Path]:
    return sorted((DATA / "headings").glob("*.txt")) + sorted((DATA / "articles").glob("*.html"))


SHAPES = ["3000-words", "150-words", "heading-every-40-words", "900-word-paragraph"]


def all_articles() -> list[tuple[str, Article]]:
    articles = [(shape, generated(shape)) for shape in SHAPES]
    for path in files():
        text = path.read_bytes()
        if path.suffix == ".txt":
            article = parse_article(text.decode().replace("@@H ", ""), source=path.name)
        else:
            article = load_article(path)
        articles.append((path.name, article))
    return articles


@pytest.mark.parametrize("target", [60, 150, 300])
def test_every_shape_keeps_every_block_and_is_titled_by_headings(target: int) -> None:
    titled_by_part = 0
    lessons_total = 0
    for name, article in all_articles():
        lessons = split_article(article, target)
        lessons_total += len(lessons)
        assert join_pieces(block for lesson in lessons for block in lesson.body) == list(article.blocks), name
        words = " ".join(block_plain(block) for block in article.blocks).split()
        assert " ".join(block_plain(block) for lesson in lessons for block in lesson.body).split() == words, name
        for lesson in lessons:
            titled_by_part += bool(re.search(r"\bPart \d+$", lesson.title))
            shown_headings = [block.text for block in lesson.shown if isinstance(block, Heading)]
            assert lesson.shown[:1] != (Heading(lesson.title, 2),), name
            if len(lessons) > 1 and any(isinstance(block, Heading) for block in lesson.body):
                assert lesson.title not in shown_headings[:1], name
            if len(lessons) == 1:
                assert lesson.title == article.title
            elif not any(isinstance(block, Heading) for block in lesson.body):
                assert lesson.title.endswith(CONTINUED_SUFFIX) or lesson.title == article.title, name
    assert titled_by_part == 0
    assert lessons_total > len(all_articles())


def test_a_900_word_paragraph_becomes_lessons_near_the_target_cut_between_sentences() -> None:
    article = generated("900-word-paragraph")
    lessons = split_article(article, 150)
    long_lessons = [lesson for lesson in lessons if lesson.title.startswith("The Whole Story")]
    assert len(long_lessons) >= 5
    assert all(lesson.words <= 225 for lesson in long_lessons)
    for lesson in long_lessons:
        for block in lesson.body:
            if isinstance(block, Paragraph):
                assert block.text.endswith(".")
    assert [lesson.title for lesson in long_lessons][1:] == ["The Whole Story (continued)"] * (len(long_lessons) - 1)


def test_a_150_word_piece_is_one_lesson_titled_by_the_article() -> None:
    [lesson] = split_article(generated("150-words"), 300)
    assert lesson.title == "A Short Note"
    assert any(isinstance(block, Heading) for block in lesson.shown)  # its section heading is shown


def test_a_heading_every_40_words_merges_sections_keeping_all_headings() -> None:
    article = generated("heading-every-40-words")
    lessons = split_article(article, 300)
    assert len(lessons) < len(article.headings) / 2
    assert sum(isinstance(block, Heading) for lesson in lessons for block in lesson.body) == len(article.headings)
