"""A lesson's blocks → the HTML part and the plain-text part of its email, from the same blocks.

HTML: semantic elements with a few classes that the email template styles (its CSS is inlined once
per lesson): lists, block quotes, tables with a header row that scroll sideways inside the card
rather than stretch it, code that wraps instead of overflowing, images scaled to the card's width.

Plain text: what a careful person would type. Numbered and bulleted lists with hanging indents,
quotes prefixed with "> ", code kept verbatim, tables as aligned columns (or one record per row when
the columns would not fit), links as "text (url)", and every line at most ``TEXT_WIDTH`` characters
except code and URLs, which are never broken.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Iterable, Sequence

from markupsafe import Markup, escape

from course.content.blocks import (
    Block,
    Code,
    Heading,
    Image,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Table,
    inline_html,
    inline_text,
)

TEXT_WIDTH = 78
# Width in CSS pixels an image is drawn at: the card's inner width (600 px card, 28 px padding).
IMAGE_WIDTH = 544


# ---------------------------------------------------------------------------------------------------
# HTML


def blocks_html(blocks: Iterable[Block]) -> Markup:
    """The HTML of ``blocks`` (inline Markdown rendered, everything else escaped)."""
    return Markup("\n".join(_html(block) for block in blocks))


def heading_tag(level: int) -> str:
    """Section headings sit under the lesson's ``<h1>``: level 1-2 → h2, 3 → h3, deeper → h4."""
    return f"h{min(max(level, 2), 4)}"


def _html(block: Block) -> str:
    if isinstance(block, Heading):
        tag = heading_tag(block.level)
        return f"<{tag}>{inline_html(block.text)}</{tag}>"
    if isinstance(block, Paragraph):
        return f"<p>{inline_html(block.text)}</p>"
    if isinstance(block, ListBlock):
        tag = "ol" if block.ordered else "ul"
        start = f' start="{block.start}"' if block.ordered and block.start != 1 else ""
        items = "".join(f"<li>{_item_html(item)}</li>" for item in block.items)
        return f'<{tag} class="list"{start}>{items}</{tag}>'
    if isinstance(block, Quote):
        return f'<blockquote class="quote">{"".join(_html(inner) for inner in block.blocks)}</blockquote>'
    if isinstance(block, Code):
        language = f' data-language="{escape(block.language)}"' if block.language else ""
        return f'<pre class="code"{language}><code>{escape(block.text)}</code></pre>'
    if isinstance(block, Table):
        return _table_html(block)
    if isinstance(block, Image):
        title = f' title="{escape(block.title)}"' if block.title else ""
        image = (
            f'<img class="image" src="{escape(block.src)}" alt="{escape(block.alt)}"{title} '
            f'width="{IMAGE_WIDTH}" style="width:100%;max-width:{IMAGE_WIDTH}px;height:auto">'
        )
        if block.title:
            return f'<figure class="figure">{image}<figcaption>{escape(block.title)}</figcaption></figure>'
        return f'<p class="figure">{image}</p>'
    if isinstance(block, Rule):
        return '<hr class="rule">'
    raise TypeError(f"not a block: {block!r}")


def _item_html(item: Sequence[Block]) -> str:
    """A list item of one paragraph is its text alone (tight); otherwise its blocks."""
    if len(item) >= 1 and isinstance(item[0], Paragraph):
        rest = "".join(_html(inner) for inner in item[1:])
        if len(item) == 1 or all(isinstance(inner, ListBlock) for inner in item[1:]):
            return inline_html(item[0].text) + rest
    return "".join(_html(inner) for inner in item)


def _table_html(table: Table) -> str:
    def cell(tag: str, text: str, column: int) -> str:
        align = table.align[column] if column < len(table.align) else ""
        style = f' style="text-align:{align}"' if align else ""
        scope = ' scope="col"' if tag == "th" else ""
        return f"<{tag}{scope}{style}>{inline_html(text)}</{tag}>"

    header = "".join(cell("th", text, column) for column, text in enumerate(table.header))
    rows = "".join(
        "<tr>" + "".join(cell("td", text, column) for column, text in enumerate(row)) + "</tr>" for row in table.rows
    )
    # The wrapper scrolls a wide table inside the card instead of widening the whole email.
    return (
        '<div class="table-wrap"><table class="table" cellpadding="0" cellspacing="0">'
        f"<thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table></div>"
    )


# ---------------------------------------------------------------------------------------------------
# Plain text


def blocks_text(blocks: Iterable[Block], width: int = TEXT_WIDTH) -> str:
    """The plain-text part of ``blocks``, blocks separated by a blank line."""
    return "\n\n".join(_text(block, width) for block in blocks).rstrip()


def _text(block: Block, width: int) -> str:
    if isinstance(block, Heading):
        text = " ".join(inline_text(block.text).split())
        underline = "=" if block.level <= 2 else "-"
        return f"{text}\n{underline * min(display_width(text), width)}"
    if isinstance(block, Paragraph):
        return wrap(inline_text(block.text), width)
    if isinstance(block, ListBlock):
        return _list_text(block, width)
    if isinstance(block, Quote):
        inner = blocks_text(block.blocks, max(width - 2, 20))
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))
    if isinstance(block, Code):
        return block.text  # verbatim: never wrapped, never re-indented
    if isinstance(block, Table):
        return table_text(block, width)
    if isinstance(block, Image):
        label = f"[Image: {block.alt}]" if block.alt else "[Image]"
        lines = [f"{label} {block.src}"]
        if block.title:
            lines.append(wrap(block.title, width))
        return "\n".join(lines)
    if isinstance(block, Rule):
        return "* * *"
    raise TypeError(f"not a block: {block!r}")


def wrap(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap each line of ``text`` (hard breaks are kept) at ``width``; a word longer than the width,
    such as a URL, stands on a line of its own and is never broken."""
    return "\n".join(
        textwrap.fill(line, width=width, break_long_words=False, break_on_hyphens=False) if line.strip() else ""
        for line in text.split("\n")
    )


def _list_text(block: ListBlock, width: int) -> str:
    items: list[str] = []
    numbers = [f"{number}." for number in range(block.start, block.start + len(block.items))]
    marker_width = max((len(number) for number in numbers), default=2) + 1 if block.ordered else 2
    for index, item in enumerate(block.items):
        marker = (numbers[index] if block.ordered else "-").ljust(marker_width)
        inner_width = max(width - marker_width, 20)
        if all(isinstance(inner, ListBlock) for inner in item[1:]):
            # A tight item: its text, then any sub-list directly under it.
            body = "\n".join(_text(inner, inner_width) for inner in item)
        else:
            body = blocks_text(item, inner_width)
        lines = body.split("\n")
        indented = [marker + lines[0]] + [(" " * marker_width + line) if line else "" for line in lines[1:]]
        items.append("\n".join(indented))
    # Items of one line each sit on consecutive lines; items with several paragraphs get air between.
    loose = any(len(item) > 1 and not all(isinstance(inner, ListBlock) for inner in item[1:]) for item in block.items)
    return ("\n\n" if loose else "\n").join(items)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospaced font: full-width characters count two."""
    return sum(2 if unicodedata.east_asian_width(char) in ("W", "F") else 1 for char in text)


def _pad(text: str, width: int, align: str) -> str:
    gap = width - display_width(text)
    if align == "right":
        return " " * gap + text
    if align == "center":
        return " " * (gap // 2) + text + " " * (gap - gap // 2)
    return text + " " * gap


def table_text(table: Table, width: int = TEXT_WIDTH) -> str:
    """Aligned columns with a rule under the header; when they do not fit in ``width``, one record per
    row instead ("Header: value" lines), which any mail client shows legibly."""
    header = [" ".join(inline_text(cell).split()) for cell in table.header]
    rows = [[" ".join(inline_text(cell).split()) for cell in row] for row in table.rows]
    columns = len(header)
    widths = [max(display_width(row[column]) for row in [header, *rows]) for column in range(columns)]
    align = list(table.align) + [""] * (columns - len(table.align))
    if sum(widths) + 2 * (columns - 1) <= width:
        def line(cells: list[str]) -> str:
            return "  ".join(_pad(cells[column], widths[column], align[column]) for column in range(columns)).rstrip()

        rule = "  ".join("-" * widths[column] for column in range(columns))
        return "\n".join([line(header), rule, *(line(row) for row in rows)])
    records = []
    for row in rows:
        records.append("\n".join(wrap(f"{header[column]}: {row[column]}", width) for column in range(columns)))
    return "\n\n".join(records)
