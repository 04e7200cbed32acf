"""Guide references: detection, matching to the catalogue, linking, and loading guides.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from course.content.article import load_article
from course.content.guides import (
    Guide,
    GuideCatalogue,
    GuideCatalogueError,
    Reference,
    find_references,
    link_markdown,
    link_plain,
    load_guides,
)
from tests.support.services import seed_article_path
from course.settings import PROJECT_ROOT

CONTENT_DIR = PROJECT_ROOT / "content"

LET_DOWN = Guide("let-down", "What Let-Down Is", "https://example.com/let-down", ("what let-down is", "let-down reflex"))
BENEFITS = Guide("benefits", "The Benefits of ANR", "https://example.com/benefits", ("benefits of ANR",))
STARTER = Guide("feeding", "Feeding a Starter", "https://example.com/feeding", ("feeding a starter",))
CATALOGUE = GuideCatalogue((LET_DOWN, BENEFITS, STARTER))


def texts(paragraph: str, catalogue: GuideCatalogue = CATALOGUE) -> list[str]:
    return [reference.text for reference in find_references(paragraph, catalogue)]


# --- detection and matching ---------------------------------------------------------------------------


def test_seed_article_references_are_found_and_matched() -> None:
    article = load_article(seed_article_path())
    found = [
        (paragraph, reference) for paragraph in article.paragraphs for reference in find_references(paragraph, CATALOGUE)
    ]
    assert [(reference.text, reference.guide) for _, reference in found] == [
        ("our guide on what let-down is and how to encourage it", LET_DOWN),
        ("the benefits of ANR page", BENEFITS),
    ]
    for paragraph, reference in found:
        assert paragraph[reference.start : reference.end] == reference.text


def test_unknown_reference_is_returned_unmatched() -> None:
    [reference] = find_references("For socks, see our guide on knitting with wool.", CATALOGUE)
    assert reference.text == "our guide on knitting with wool"
    assert reference.guide is None


@pytest.mark.parametrize(
    ("paragraph", "expected"),
    [
        ("See our guide to feeding a starter, then bake.", ["our guide to feeding a starter"]),
        ("Our article about feeding a starter has the schedule.", ["Our article about feeding a starter"]),
        ("Read more in Feeding a Starter.", ["Feeding a Starter"]),
        ("Start with the glossary page.", ["the glossary page"]),
        ("Read the first chapter of the starter guide today.", ["the starter guide"]),
        ("Our feeding guide explains it and the benefits page sums it up.", ["Our feeding guide", "the benefits page"]),
        ("See our guide on hydration and for shaping, our shaping guide.", ["our guide on hydration", "our shaping guide"]),
        ("Read our guide on hydration — it is short.", ["our guide on hydration"]),
    ],
)
def test_reference_phrasings_and_where_they_end(paragraph: str, expected: list[str]) -> None:
    assert texts(paragraph) == expected


@pytest.mark.parametrize(
    "paragraph",
    [
        "She will guide you through the first week.",
        "The rangers guide you up the mountain.",
        "Good teachers guide; they do not push.",
        "The nurse will page you when it is ready.",
        "Turn to the next page for the recipe.",
        "We were finally on the same page about it.",
        "This page explains nothing in particular.",
        "A guide is only as good as its examples.",
        "Check our guide to it.",
    ],
)
def test_ordinary_sentences_with_guide_or_page_are_not_references(paragraph: str) -> None:
    assert texts(paragraph) == []


def test_match_scores_word_overlap_and_rejects_weak_matches() -> None:
    assert CATALOGUE.match("the Let-Down reflex page") is LET_DOWN
    assert CATALOGUE.match("our guide on feeding starters") is STARTER  # plural folded
    assert CATALOGUE.match("our guide on knitting a starter jumper with wool") is None
    assert CATALOGUE.match("the page") is None
    assert CATALOGUE.get("benefits") is BENEFITS
    assert CATALOGUE.get("missing") is None


# --- linking ----------------------------------------------------------------------------------------------


def test_link_markdown_and_plain_link_matched_references_only() -> None:
    paragraph = "See our guide on feeding a starter, or our guide on knitting socks."
    references = find_references(paragraph, CATALOGUE)
    assert [reference.guide for reference in references] == [STARTER, None]
    assert link_markdown(paragraph, references) == (
        "See [our guide on feeding a starter](https://example.com/feeding), or our guide on knitting socks."
    )
    assert link_plain(paragraph, references) == (
        "See our guide on feeding a starter (https://example.com/feeding), or our guide on knitting socks."
    )


def test_link_markdown_escapes_brackets_and_backslashes_in_the_link_text() -> None:
    paragraph = r"Open the a]b\c page now."
    text = r"the a]b\c page"
    reference = Reference(text=text, start=paragraph.index(text), end=paragraph.index(text) + len(text), guide=STARTER)
    assert link_markdown(paragraph, [reference]) == r"Open [the a\]b\\c page](https://example.com/feeding) now."


def test_link_rejects_references_that_do_not_belong_to_the_paragraph() -> None:
    with pytest.raises(ValueError, match="not at offsets"):
        link_plain("Some other text entirely.", [Reference("the glossary page", 0, 17, STARTER)])


# --- loading guides.toml -----------------------------------------------------------------------------------


def test_shipped_catalogue_is_valid() -> None:
    catalogue = load_guides(CONTENT_DIR / "guides.toml")
    assert 5 <= len(catalogue.guides) <= 8
    assert len({guide.key for guide in catalogue.guides}) == len(catalogue.guides)
    for guide in catalogue.guides:
        assert guide.url.startswith("https://example.com/")
        assert guide.phrases


VALID_GUIDE = 'key = "k"\ntitle = "T"\nurl = "https://example.com/k"\nphrases = ["feeding"]\n'


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[[guide]]\n" + VALID_GUIDE + "[[guide]]\n" + VALID_GUIDE, "key 'k' is used by an earlier guide"),
        ("[[guide]]\n" + VALID_GUIDE.replace("https://example.com/k", "ftp://example.com/k"), "'url'"),
        ("[[guide]]\n" + VALID_GUIDE.replace("https://example.com/k", "https://"), "'url'"),
        ("[[guide]]\n" + VALID_GUIDE.replace('["feeding"]', "[]"), "'phrases'"),
        ("[[guide]]\n" + VALID_GUIDE.replace('["feeding"]', '["the guide"]'), "no distinctive words"),
        ("[[guide]]\n" + VALID_GUIDE.replace('title = "T"\n', ""), "missing 'title'"),
        ("[[guide]]\n" + VALID_GUIDE.replace('key = "k"', 'key = "Not A Slug"'), "'key'"),
        ("[[guide]]\n" + VALID_GUIDE + 'colour = "red"\n', "unknown key(s) colour"),
        ("[[guide]\nkey = ", "invalid TOML"),
        ('title = "no guides"\n', "unknown top-level key"),
        ("", "expected one or more [[guide]] tables"),
    ],
)
def test_invalid_catalogue_raises_error_naming_the_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "guides.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GuideCatalogueError) as raised:
        load_guides(path)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_missing_catalogue_raises_error(tmp_path: Path) -> None:
    with pytest.raises(GuideCatalogueError, match="cannot read guide catalogue"):
        load_guides(tmp_path / "absent.toml")
