"""The three readers — Markdown, plain text, HTML — produce one document model, block by block."""

from __future__ import annotations

from pathlib import Path

import pytest

from course.content.article import ArticleError, load_article, parse_article
from course.content.blocks import (
    Code,
    Heading,
    Image,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Table,
    block_from_dict,
    block_plain,
    block_to_dict,
    blocks_to_markdown,
    escape_inline,
    inline_html,
    inline_plain,
    inline_text,
)

ARTICLES = Path(__file__).parent / "data" / "articles"


# --- Markdown ----------------------------------------------------------------------------------------------

RICH_MARKDOWN = """---
title: Knife Skills for Home Cooks
tags:
  - kitchen
  - basics
authors: [Mira Osei, Tom Lind]
date: 2024-05-02
---

A sharp knife is safer than a blunt one, because it goes where you aim it.
<!--more-->

The Grip
--------

Pinch the blade where it meets the handle. Read the [sharpening guide][sharp] first,
and keep the *guiding hand* curled.\\
Knuckles forward.

## Cuts
### Dice

1. Halve the onion.
2. Slice towards the root:
   - keep the root on
   - do not cut through

> Slow is smooth, and smooth is fast.
> — every chef, ever

| Cut | Size | Use |
|:----|-----:|:---:|
| Brunoise | 2 mm | sauces |
| Julienne | 3 mm × 5 cm | salads \\| stir-fry |

```python
def dice(onion):
    return [cube for cube in onion]  # a very long line of code that must never be wrapped by a renderer
```

    indented code

![Onion, diced](https://img.example.com/dice.jpg "Even cubes cook evenly")

* * *

A footnote on steel.[^steel]

[sharp]: https://knives.example.com/sharpening "How to sharpen"
[^steel]: Carbon steel takes a finer edge than stainless.
"""


def test_rich_markdown_becomes_blocks_with_levels_and_resolved_links() -> None:
    article = parse_article(RICH_MARKDOWN, source="knives.md")
    assert article.title == "Knife Skills for Home Cooks"
    assert article.meta["tags"] == ("kitchen", "basics")
    assert article.meta["authors"] == ("Mira Osei", "Tom Lind")
    assert article.meta["date"] == "2024-05-02"
    assert [type(block).__name__ for block in article.blocks] == [
        "Paragraph", "Heading", "Paragraph", "Heading", "Heading", "ListBlock", "Quote", "Table",
        "Code", "Code", "Image", "Rule", "Paragraph", "Paragraph",
    ]  # fmt: skip
    lede, grip, grip_text, cuts, dice, steps, quote, table, code, indented, image, rule, note_ref, note = article.blocks
    # <!--more--> is dropped, the setext heading is a level-2 heading, ## then ### keep their levels.
    assert lede == Paragraph("A sharp knife is safer than a blunt one, because it goes where you aim it.")
    assert (grip, cuts, dice) == (Heading("The Grip", 2), Heading("Cuts", 2), Heading("Dice", 3))
    # The reference-style link is resolved inline; the hard break is kept.
    assert grip_text == Paragraph(
        "Pinch the blade where it meets the handle. Read the "
        '[sharpening guide](https://knives.example.com/sharpening "How to sharpen") first, '
        "and keep the *guiding hand* curled.\\\nKnuckles forward."
    )
    assert steps == ListBlock(
        ordered=True,
        items=(
            (Paragraph("Halve the onion."),),
            (
                Paragraph("Slice towards the root:"),
                ListBlock(ordered=False, items=((Paragraph("keep the root on"),), (Paragraph("do not cut through"),))),
            ),
        ),
    )
    assert quote == Quote((Paragraph("Slow is smooth, and smooth is fast. — every chef, ever"),))
    assert table == Table(
        header=("Cut", "Size", "Use"),
        rows=(("Brunoise", "2 mm", "sauces"), ("Julienne", "3 mm × 5 cm", "salads \\| stir-fry")),
        align=("left", "right", "center"),
    )
    assert inline_plain(table.rows[1][2]) == "salads | stir-fry"
    assert code.language == "python" and "a very long line of code" in code.text and code.text.startswith("def dice")
    assert indented == Code("indented code")
    assert image == Image("https://img.example.com/dice.jpg", "Onion, diced", "Even cubes cook evenly")
    assert rule == Rule()
    assert note_ref == Paragraph("A footnote on steel.\\[1\\]")
    assert note == Paragraph("\\[1\\] Carbon steel takes a finer edge than stainless.")


def test_every_word_of_the_markdown_source_survives() -> None:
    article = parse_article(RICH_MARKDOWN, source="knives.md")
    words = " ".join(block_plain(block) for block in article.blocks)
    for expected in ["Knuckles forward.", "do not cut through", "every chef, ever", "Julienne", "indented code", "stainless"]:
        assert expected in words


def test_html_blocks_inside_markdown_are_converted_and_comments_dropped() -> None:
    text = "# T\n\nLede.\n\n<!-- wp:table -->\n<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>\n<!-- /wp:table -->\n\nEnd.\n"
    article = parse_article(text, source="t.md")
    assert article.blocks == (
        Paragraph("Lede."),
        Table(header=("A", "B"), rows=(("1", "2"),), align=("", "")),
        Paragraph("End."),
    )


def test_inline_html_and_markdown_characters_in_text_stay_text() -> None:
    article = parse_article("# T\n\nUse 2 * 3 and a_b_c, not <b>bold</b>; 5 < 6 & [x] stays.\n", source="t.md")
    [paragraph] = article.blocks
    assert isinstance(paragraph, Paragraph)
    assert inline_plain(paragraph.text) == "Use 2 * 3 and a_b_c, not bold; 5 < 6 & [x] stays."
    assert "<b>" not in inline_html(paragraph.text)


def test_inline_emphasis_tags_become_the_emphasis_they_mean() -> None:
    """<b>, <i>, <s> and their synonyms are written as Markdown emphasis (spaces moved outside the
    markers); an empty or unclosed one is dropped, a stray closing one ignored: the words never change."""
    source = "# T\n\nA <b>bold</b> and <i> spaced </i> word, <b></b>empty, </b>stray, <del>old</del>, <b>open.\n"
    [paragraph] = parse_article(source, source="t.md").blocks
    assert isinstance(paragraph, Paragraph)
    assert paragraph.text == "A **bold** and *spaced* word, empty, stray, ~~old~~, open."
    assert inline_html(paragraph.text) == "A <strong>bold</strong> and <em>spaced</em> word, empty, stray, <s>old</s>, open."
    assert inline_plain(paragraph.text) == "A bold and spaced word, empty, stray, old, open."


def test_blocks_round_trip_through_json_and_markdown() -> None:
    article = parse_article(RICH_MARKDOWN, source="knives.md")
    assert tuple(block_from_dict(block_to_dict(block)) for block in article.blocks) == article.blocks
    again = parse_article("# Knife Skills for Home Cooks\n\n" + blocks_to_markdown(article.blocks), source="again.md")
    assert again.blocks == article.blocks


def test_block_from_dict_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown block kind 'video'"):
        block_from_dict({"kind": "video"})


def test_inline_text_writes_links_as_text_and_url() -> None:
    markdown = "See [the guide](https://g.example/x) or <https://g.example/y>, **now** and `code`."
    assert inline_text(markdown) == "See the guide (https://g.example/x) or https://g.example/y, now and code."


def test_escape_inline_is_literal() -> None:
    for text in ["2 * 3 = 6", "[not a link](x)", "a_b_c", "<b>", "&amp;", "~~no~~", "!![x]"]:
        assert inline_plain(escape_inline(text)) == text


# --- plain text -----------------------------------------------------------------------------------------------


def test_german_text_with_bom_crlf_lists_and_quotes() -> None:
    text = (
        "\ufeffSauerteig für Anfänger\r\n"
        "Ein Sauerteig braucht nur Mehl, Wasser und Geduld; alles andere erledigen die Mikroben.\r\n"
        "Was du brauchst\r\n"
        "- 50 g Roggenvollkornmehl\r\n"
        "- 50 g Wasser\r\n"
        "- ein Glas mit Deckel\r\n"
        "Die ersten Tage\r\n"
        "1. Mehl und Wasser verrühren.\r\n"
        "2. Abdecken und warm stellen.\r\n"
        "3. Jeden Tag füttern.\r\n"
        "„Geduld ist die wichtigste Zutat“\r\n"
        "Nach fünf bis sieben Tagen riecht der Teig angenehm säuerlich und verdoppelt sich nach dem Füttern.\r\n"
        "> Ein Zitat aus der Backstube.\r\n"
    )
    article = parse_article(text, source="sauerteig.txt")
    assert article.title == "Sauerteig für Anfänger"
    assert article.blocks == (
        Paragraph("Ein Sauerteig braucht nur Mehl, Wasser und Geduld; alles andere erledigen die Mikroben."),
        Heading("Was du brauchst", 2),
        ListBlock(False, ((Paragraph("50 g Roggenvollkornmehl"),), (Paragraph("50 g Wasser"),), (Paragraph("ein Glas mit Deckel"),))),
        Heading("Die ersten Tage", 2),
        ListBlock(True, ((Paragraph("Mehl und Wasser verrühren."),), (Paragraph("Abdecken und warm stellen."),), (Paragraph("Jeden Tag füttern."),))),
        Paragraph("„Geduld ist die wichtigste Zutat“"),
        Paragraph("Nach fünf bis sieben Tagen riecht der Teig angenehm säuerlich und verdoppelt sich nach dem Füttern."),
        Quote((Paragraph("Ein Zitat aus der Backstube."),)),
    )


def test_plain_text_with_markdown_characters_keeps_them_literal() -> None:
    article = parse_article("T\nMix 2*3 parts [flour] with_water <now>.\n", source="t.txt")
    [paragraph] = article.blocks
    assert isinstance(paragraph, Paragraph)
    assert inline_plain(paragraph.text) == "Mix 2*3 parts [flour] with_water <now>."


# --- HTML -------------------------------------------------------------------------------------------------------


def test_wordpress_page_keeps_the_article_and_drops_the_site() -> None:
    article = load_article(ARTICLES / "wordpress-tomatoes.html")
    assert article.title == "Growing Tomatoes on a Balcony"
    kinds = [block.kind for block in article.blocks]
    assert kinds == [
        "paragraph", "heading", "paragraph", "list", "heading", "paragraph", "image", "heading",
        "table", "list", "quote", "code", "paragraph",
    ]  # fmt: skip
    headings = [(block.text, block.level) for block in article.blocks if isinstance(block, Heading)]
    assert headings == [("Choosing a variety", 2), ("Seeds or seedlings", 3), ("Feeding schedule", 2)]
    everything = " ".join(block_plain(block) for block in article.blocks)
    for chrome in ["Popular posts", "All rights reserved", "About", "Posted on"]:
        assert chrome not in everything
    link_paragraph = article.blocks[2]
    assert isinstance(link_paragraph, Paragraph)
    assert "[our guide to tomato varieties](https://example.com/varieties)" in link_paragraph.text
    image = article.blocks[6]
    assert image == Image(
        "https://example.com/img/balcony.jpg", "Tomato plants on a sunny balcony", "Three pots on a south-facing balcony."
    )
    ordered = article.blocks[9]
    assert isinstance(ordered, ListBlock) and ordered.ordered
    code = article.blocks[11]
    assert code == Code("water --litres 2 --every morning", "bash")


def test_ghost_fragment_keeps_figure_caption_table_pipes_and_code_language() -> None:
    article = load_article(ARTICLES / "ghost-export-fragment.html")
    assert article.title == "Why Your Houseplants Keep Dying"
    table = next(block for block in article.blocks if isinstance(block, Table))
    assert table.header == ("Season", "Interval")
    assert [inline_plain(cell) for cell in table.rows[1]] == ["Winter", "every 14 days | less for cacti"]
    code = next(block for block in article.blocks if isinstance(block, Code))
    assert code.language == "text" and code.text == "moisture < 30% → water\nmoisture ≥ 30% → wait"
    image = next(block for block in article.blocks if isinstance(block, Image))
    assert image.title == "The finger test takes five seconds."
    assert (Heading("Watering by season", 3)) in article.blocks


def test_saved_latin1_page_is_decoded_by_its_meta_charset_and_links_made_absolute() -> None:
    article = load_article(ARTICLES / "saved-page-de.html")
    assert article.title == "Brot backen ohne Kneten"
    assert article.meta["description"] == "Ein Brot, das über Nacht von allein reift."
    everything = " ".join(block_plain(block) for block in article.blocks)
    assert "Schüssel" in everything
    for chrome in ["Cookies", "Impressum", "Dinkelbrötchen", "Kommentare", "Rezepte"]:
        assert chrome not in everything
    assert "[unserem Ratgeber zu Mehltypen](https://backstube.example/mehltypen)" in article.blocks[-1].text  # type: ignore[union-attr]
    assert [block.text for block in article.blocks if isinstance(block, Heading)] == ["Zutaten", "So geht es"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"<html><body><nav>Home</nav></body></html>", "no title"),
        (b"<p>Just a fragment without any title.</p>", "no title"),
        ("<html><head><meta charset=\"utf-8\"></head><body>caf\xe9</body></html>".encode("latin-1"), "not UTF-8"),
    ],
)
def test_broken_html_is_an_article_error(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(content)
    with pytest.raises(ArticleError, match=expected) as raised:
        load_article(path)
    assert str(path) in str(raised.value)
