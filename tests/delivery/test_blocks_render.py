"""Both parts of a lesson email from the same blocks, checked block by block."""

from __future__ import annotations

import re

import lxml.html

from course.content.article import parse_article
from course.content.blocks import Code, Heading, Image, ListBlock, Paragraph, Quote, Rule, Table
from course.delivery.blocks_render import TEXT_WIDTH, blocks_html, blocks_text, table_text

LONG_URL = "https://knives.example.com/guides/sharpening/whetstones/" + "x" * 60

ARTICLE = f"""# Knife Skills

A sharp knife is safer than a blunt one, because it goes where you aim it, and it slips less on the skin of a tomato than you would think. Read the [sharpening guide]({LONG_URL}) first.

## The Grip
### Pinch

1. Pinch the blade where it meets the handle, with the thumb on one side and the curled index finger on the other.
2. Curl the guiding hand.
   - knuckles forward
   - fingertips tucked

- **Onion**
- *Carrot*

> Slow is smooth, and smooth is fast. Every chef you will ever meet says it, and every one of them learnt it by cutting themselves at least once.

| Cut | Size | Use |
|:----|-----:|:---:|
| Brunoise | 2 mm | sauces |
| Julienne | 3 mm × 5 cm | salads |

```python
def dice(onion):
    return [cube for cube in onion]  # a very long line of code that must never be wrapped by anything at all, ever
```

![Diced onion](https://img.example.com/dice.jpg "Even cubes cook evenly")

---

The end.
"""


def blocks():
    return parse_article(ARTICLE, source="knives.md").blocks


def test_text_part_block_by_block() -> None:
    text = blocks_text(blocks())
    parts = text.split("\n\n")
    assert parts[0].startswith("A sharp knife is safer")
    assert f"sharpening guide ({LONG_URL}) first." in " ".join(parts[0].split())
    assert parts[1] == "The Grip\n========"
    assert parts[2] == "Pinch\n-----"
    # Numbered list with hanging indent; the nested bullets under item 2.
    assert parts[3] == (
        "1. Pinch the blade where it meets the handle, with the thumb on one side and\n"
        "   the curled index finger on the other.\n"
        "2. Curl the guiding hand.\n"
        "   - knuckles forward\n"
        "   - fingertips tucked"
    )
    assert parts[4] == "- Onion\n- Carrot"
    assert parts[5] == (
        "> Slow is smooth, and smooth is fast. Every chef you will ever meet says it,\n"
        "> and every one of them learnt it by cutting themselves at least once."
    )
    table = table_text(next(block for block in blocks() if isinstance(block, Table)))
    assert table.split("\n") == [
        "Cut              Size   Use",
        "--------  -----------  ------",
        "Brunoise         2 mm  sauces",
        "Julienne  3 mm × 5 cm  salads",
    ]
    assert table in text
    code = next(block for block in blocks() if isinstance(block, Code))
    assert code.text in text  # verbatim
    assert "[Image: Diced onion] https://img.example.com/dice.jpg\nEven cubes cook evenly" in text
    assert "* * *\n\nThe end." in text


def test_text_lines_are_at_most_78_characters_except_code_and_urls() -> None:
    text = blocks_text(blocks())
    code_lines = set(next(block for block in blocks() if isinstance(block, Code)).text.split("\n"))
    for line in text.split("\n"):
        if len(line) > TEXT_WIDTH:
            assert line in code_lines or re.search(r"https?://\S{40,}", line), line


def test_text_table_too_wide_becomes_one_record_per_row() -> None:
    table = Table(("Name", "Notes"), (("Rye", "a " * 50),), ("", ""))
    text = table_text(table, 40)
    assert text.startswith("Name: Rye\nNotes: a a a")
    assert all(len(line) <= 40 for line in text.split("\n"))


def test_html_part_block_by_block() -> None:
    html = str(blocks_html(blocks()))
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    tags = [child.tag for child in root]
    assert tags == ["p", "h2", "h3", "ol", "ul", "blockquote", "div", "pre", "figure", "hr", "p"]
    assert root[0].find("a").get("href") == LONG_URL
    ordered = root[3]
    assert [li.text_content().split()[0] for li in ordered.findall("li")] == ["Pinch", "Curl"]
    assert ordered.findall("li")[1].find("ul") is not None  # nested list kept
    assert root[4].find("li/strong").text == "Onion" and root[4].findall("li")[1].find("em").text == "Carrot"
    table = root[6].find("table")
    assert [th.text for th in table.findall("thead/tr/th")] == ["Cut", "Size", "Use"]
    assert [th.get("scope") for th in table.findall("thead/tr/th")] == ["col"] * 3
    assert table.findall("tbody/tr")[0].findall("td")[1].get("style") == "text-align:right"
    code = root[7]
    assert code.get("class") == "code" and code.get("data-language") == "python"
    assert "a very long line of code" in code.text_content()
    image = root[8].find("img")
    assert image.get("alt") == "Diced onion" and "max-width" in image.get("style") and image.get("width") == "544"
    assert root[8].find("figcaption").text == "Even cubes cook evenly"


def test_html_escapes_text_and_never_passes_raw_html() -> None:
    html = str(
        blocks_html(
            [
                Paragraph("Use \\<script> and 5 < 6"),
                Code("<b>bold</b>"),
                Table(("<i>",), (("x",),), ("",)),
                Image('x" onerror="alert(1)', "a<b"),
                Heading("A & B", 2),
                Quote((Paragraph("q"),)),
                ListBlock(True, ((Paragraph("a"),),), start=3),
                Rule(),
            ]
        )
    )
    assert "<script>" not in html and "<b>bold" not in html and "<i>" not in html
    assert 'onerror="' not in html
    assert '<ol class="list" start="3">' in html
