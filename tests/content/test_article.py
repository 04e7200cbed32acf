"""Parsing articles: Markdown, plain text (including the seed article), heading detection, errors."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from course.content.article import Article, ArticleError, Section, load_article, parse_article
from course.content.blocks import Code, Heading, ListBlock, Paragraph, Quote
from tests.support.services import seed_article_path
from tests.support.content_fixtures import SEED_HEADINGS

# --- plain text: the seed article -------------------------------------------------------------------


def test_seed_article_keeps_title_lede_and_all_five_headings() -> None:
    path = seed_article_path()
    article = load_article(path)
    source_lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    assert article.title == source_lines[0]
    assert article.source == str(path)
    assert dict(article.meta) == {}
    assert [section.heading for section in article.sections] == [None, *SEED_HEADINGS]
    # The lede is the line after the title; every non-heading line is exactly one paragraph.
    assert article.sections[0].paragraphs == (source_lines[1],)
    body_lines = [line for line in source_lines[1:] if line not in SEED_HEADINGS]
    assert list(article.paragraphs) == body_lines
    assert all(section.paragraphs for section in article.sections)


# --- plain text: heading detection -------------------------------------------------------------------

BODY = "This paragraph is ordinary body text, long enough and punctuated like any sentence in an article."


def headings_of(text: str) -> list[str | None]:
    return [section.heading for section in parse_article(text, source="t.txt").sections]


@pytest.mark.parametrize(
    "candidate",
    [
        "It works.",
        "Why not?",
        "Stress matters: a lot",
        "Wait!",
        "She said “rest it”",
        'He called it "the mother"',
        "Flour, water, salt,",
        "and then it rose",
        "- flour and water",
        "1. Mix the dough",
        "> a quoted line",
        "It rose. Then it fell",
        "Feed it; wait a day",
        "A sentence that is short on punctuation but far too long to be any kind of heading at all",
    ],
)
def test_sentence_like_short_lines_are_paragraphs_not_headings(candidate: str) -> None:
    text = f"A Title\nThe lede says what the article is about.\n{candidate}\n{BODY}\n"
    article = parse_article(text, source="t.txt")
    assert [section.heading for section in article.sections] == [None]
    assert candidate in article.paragraphs


@pytest.mark.parametrize(
    "heading",
    [
        "Oxytocin and Trust",
        "The Let-Down Connection",
        "Step 2: Shape the Loaf",
        "Dr. Lee's Method",
        "5 Common Mistakes",
        "FAQ",
        "Why Repetition Matters  ",  # trailing spaces are not punctuation
        "Flour, Water and a Jar",
        "What “Active” Means",
    ],
)
def test_real_headings_are_found(heading: str) -> None:
    text = f"A Title\nThe lede says what the article is about.\n{heading}\n{BODY}\n"
    assert headings_of(text) == [None, heading.strip()]


def test_heading_followed_by_a_short_sentence_is_still_a_heading() -> None:
    text = f"A Title\nThe lede.\nThe Short Answer\nIt works.\nThe Long Answer\n{BODY}\n"
    article = parse_article(text, source="t.txt")
    assert [section.heading for section in article.sections] == [None, "The Short Answer", "The Long Answer"]
    assert article.sections[1].paragraphs == ("It works.",)


def test_short_unpunctuated_last_line_is_a_paragraph() -> None:
    article = parse_article(f"A Title\n{BODY}\nHappy baking\n", source="t.txt")
    assert [section.heading for section in article.sections] == [None]
    assert article.paragraphs[-1] == "Happy baking"


def test_of_two_heading_like_lines_only_the_one_above_body_text_is_the_heading() -> None:
    article = parse_article(f"A Title\nThe lede.\nPart One\nGetting Started\n{BODY}\n", source="t.txt")
    assert [section.heading for section in article.sections] == [None, "Getting Started"]
    assert article.sections[0].paragraphs == ("The lede.", "Part One")


def test_article_without_lede_starts_with_a_heading_section() -> None:
    article = parse_article(f"A Title\nFirst Steps\n{BODY}\n", source="t.txt")
    assert article.sections == (Section("First Steps", (BODY,)),)


def test_blank_line_separated_text_joins_wrapped_lines_into_paragraphs() -> None:
    text = (
        "Sourdough Basics\n\n"
        "A starter is flour and water\nthat has learnt to ferment.\n\n"
        "Feeding It\n\n"
        "Feed it every day\nat the same time.\n\n"
        "Keep the jar warm.\n"
    )
    article = parse_article(text, source="t.txt")
    assert article.title == "Sourdough Basics"
    assert article.sections == (
        Section(None, ("A starter is flour and water that has learnt to ferment.",)),
        Section("Feeding It", ("Feed it every day at the same time.", "Keep the jar warm.")),
    )


def test_blank_line_after_title_only_keeps_one_paragraph_per_line() -> None:
    text = f"A Title\n\nThe lede.\nA Heading\n{BODY}\nAnother line.\n"
    article = parse_article(text, source="t.txt")
    assert article.sections == (Section(None, ("The lede.",)), Section("A Heading", (BODY, "Another line.")))


def test_crlf_line_endings_parse_like_lf() -> None:
    text = f"A Title\nThe lede.\nA Heading\n{BODY}\n"
    assert parse_article(text.replace("\n", "\r\n"), source="t.txt") == parse_article(text, source="t.txt")


# --- Markdown ------------------------------------------------------------------------------------------

MARKDOWN = """---
author: Jo Baker
summary: "Quoted: value"
---

# Flour and Water

The lede, wrapped
over two lines.

## Mixing

Mix the flour
and the water.

- flour
- water

> A quotation
> over two lines.

### Resting

```
# not a heading
keep   spacing
```
"""


def test_markdown_front_matter_title_and_blocks() -> None:
    article = parse_article(MARKDOWN, source="flour.md")
    assert article.title == "Flour and Water"
    assert dict(article.meta) == {"author": "Jo Baker", "summary": "Quoted: value"}
    assert article.blocks == (
        Paragraph("The lede, wrapped over two lines."),
        Heading("Mixing", 2),
        Paragraph("Mix the flour and the water."),
        ListBlock(ordered=False, items=((Paragraph("flour"),), (Paragraph("water"),))),
        Quote((Paragraph("A quotation over two lines."),)),
        Heading("Resting", 3),
        Code("# not a heading\nkeep   spacing"),
    )
    # The old sectioned view is still there, each block as Markdown.
    assert article.sections == (
        Section(None, ("The lede, wrapped over two lines.",)),
        Section("Mixing", ("Mix the flour and the water.", "- flour\n- water", "> A quotation over two lines.")),
        Section("Resting", ("```\n# not a heading\nkeep   spacing\n```",)),
    )
    assert article.paragraphs == tuple(p for section in article.sections for p in section.paragraphs)


def test_markdown_title_from_front_matter_and_repeated_h1_is_not_a_section() -> None:
    text = "---\ntitle: Front Title\n---\n# Front Title\n\nLede.\n\n## Part\n\nBody.\n"
    article = parse_article(text, source="x.md")
    assert article.title == "Front Title"
    assert [section.heading for section in article.sections] == [None, "Part"]


def test_markdown_without_front_matter_and_with_closing_hashes() -> None:
    article = parse_article("# Title #\nLede.\n## Section ##\nBody.\n", source="x.md")
    assert article.title == "Title"
    assert article.blocks == (Paragraph("Lede."), Heading("Section", 2), Paragraph("Body."))


def test_meta_is_read_only_and_article_is_hashable_and_picklable() -> None:
    article = parse_article(MARKDOWN, source="flour.md")
    with pytest.raises(TypeError):
        article.meta["author"] = "someone else"  # type: ignore[index]
    assert article.meta["author"] == "Jo Baker"
    assert article.meta.get("missing") is None
    assert hash(article) == hash(parse_article(MARKDOWN, source="flour.md"))
    assert pickle.loads(pickle.dumps(article)) == article
    assert copy.deepcopy(article) == article
    assert article != Article(article.title, article.sections, article.source)  # meta takes part in equality


def test_format_is_chosen_from_source_unless_given() -> None:
    text = "# Title\n\nBody paragraph.\n"
    assert parse_article(text, source="a.md").title == "Title"
    # As plain text the "# Title" line is simply the first line.
    assert parse_article(text, source="a.txt").title == "# Title"
    assert parse_article(text, fmt="markdown").title == "Title"


def test_load_article_reads_markdown_and_text_files(tmp_path: Path) -> None:
    markdown_path = tmp_path / "a.md"
    markdown_path.write_text("\ufeff# Title\n\nBody.\n", encoding="utf-8")
    text_path = tmp_path / "b.txt"
    text_path.write_text("Title\nBody.\n", encoding="utf-8")
    assert load_article(markdown_path) == Article("Title", (Paragraph("Body."),), str(markdown_path))
    assert load_article(text_path).blocks == (Paragraph("Body."),)


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.txt", b"", "empty article"),
        ("blank.md", b"  \n\n\t\n", "empty article"),
        ("binary.txt", b"Title\n\x00\x01\x02", "binary"),
        ("latin1.txt", "Caf\u00e9 Title\nBody.\n".encode("latin-1"), "not UTF-8"),
        ("notitle.md", b"Just a paragraph.\n\n## Heading\n\nBody.\n", "no title"),
        ("only-title.md", b"# Title\n\n", "no paragraphs"),
        ("only-headings.md", b"# Title\n\n## A\n\n## B\n", "no paragraphs"),
        ("only-title.txt", b"Just A Title\n\n", "no paragraphs"),
        ("unterminated.md", b"---\ntitle: T\n\n# T\n\nBody.\n", "never closed"),
        ("bad-front.md", b"---\nthis is not a pair\n---\n# T\n\nBody.\n", "2: front matter must be 'key: value' lines"),
        ("bad-yaml.md", b"---\ntitle: [unclosed\n---\n# T\n\nBody.\n", "front matter is not valid YAML"),
        ("empty-heading.md", b"# T\n\nBody.\n\n##\n\nMore.\n", "5: empty heading"),
        ("fence.md", b"# T\n\n```\ncode\n", "3: code fence"),
        ("article.docx", b"Title\nBody.\n", "unknown article extension"),
        (
            "no-title.txt",
            (" ".join(["word"] * 40) + ".\nSecond paragraph.\n").encode(),
            "no title",
        ),
    ],
)
def test_broken_input_raises_article_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ArticleError) as raised:
        load_article(path)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_missing_file_raises_article_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.md"
    with pytest.raises(ArticleError, match="cannot read article"):
        load_article(path)


def test_article_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="<string>: empty article"):
        parse_article("")
