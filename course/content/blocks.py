"""The document model every article is read into, whatever its source format.

An article is a sequence of blocks: headings (with their level), paragraphs, lists, block quotes,
code, tables, images and thematic breaks. Markdown, plain text and HTML readers all produce this
model, the splitter cuts it between blocks, and the renderers turn the same blocks into the HTML and
the plain-text part of an email, so nothing a publisher wrote is flattened on the way.

Inline content (the text of a paragraph, a heading, a list item or a table cell) is kept as
*canonical inline Markdown*: emphasis, code spans and links written one way (``*em*``, ``**strong**``,
`` `code` ``, ``[text](url)``), reference-style links already resolved, and every other Markdown
character escaped. One string per block keeps the model small and JSON-friendly, and
:func:`inline_plain` gives the words a reader sees (for counting, comparing and splitting).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

Alignment = Literal["", "left", "center", "right"]


@dataclass(frozen=True)
class Heading:
    kind: ClassVar[str] = "heading"
    text: str  # inline Markdown
    level: int  # 1-6 as written in the source; the title is not a heading block


@dataclass(frozen=True)
class Paragraph:
    kind: ClassVar[str] = "paragraph"
    text: str  # inline Markdown; a hard line break is a backslash before a newline
    # True for the second and later pieces of a paragraph that the splitter cut between sentences
    # because it was longer than a lesson: joining it to the piece before restores the paragraph.
    continues: bool = False


@dataclass(frozen=True)
class ListBlock:
    kind: ClassVar[str] = "list"
    ordered: bool
    items: tuple[tuple[Block, ...], ...]  # each item is a sequence of blocks (paragraphs, sub-lists…)
    start: int = 1  # number of the first item of an ordered list


@dataclass(frozen=True)
class Quote:
    kind: ClassVar[str] = "quote"
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Code:
    kind: ClassVar[str] = "code"
    text: str  # verbatim, without the final newline
    language: str = ""


@dataclass(frozen=True)
class Table:
    kind: ClassVar[str] = "table"
    header: tuple[str, ...]  # inline Markdown per cell
    rows: tuple[tuple[str, ...], ...]  # every row has as many cells as the header
    align: tuple[Alignment, ...] = field(default=())


@dataclass(frozen=True)
class Image:
    kind: ClassVar[str] = "image"
    src: str
    alt: str = ""
    title: str = ""  # also used for a figure's caption


@dataclass(frozen=True)
class Rule:
    kind: ClassVar[str] = "rule"


Block = Heading | Paragraph | ListBlock | Quote | Code | Table | Image | Rule

BLOCK_KINDS = ("heading", "paragraph", "list", "quote", "code", "table", "image", "rule")


# ---------------------------------------------------------------------------------------------------
# Inline Markdown


# The inline parser: CommonMark with strikethrough. Raw HTML never reaches the model (readers turn it
# into Markdown first), so it stays disabled here and a stray "<b>" is text.
_inline_parser = MarkdownIt("commonmark", {"html": False}).enable("strikethrough")

# Characters that could start inline syntax, each escaped only where it could: "!" before "[", "&"
# when it spells an entity, "<" when it could open an autolink, "~" when doubled. A table cell also
# escapes "|" (see the Markdown reader).
_ESCAPED = re.compile(r"[\\`*_\[\]]|!(?=\[)|&(?=#?\w+;)|<(?=[A-Za-z/!?])|~(?=~)|(?<=~)~")


def escape_inline(text: str) -> str:
    """Plain text → inline Markdown that renders as exactly that text.

    Whitespace runs become single spaces: inline Markdown has no other meaning for them, and a
    canonical form makes paragraphs comparable.
    """
    return _ESCAPED.sub(lambda found: "\\" + found.group(0), " ".join(text.split()))


def inline_tokens(markdown: str) -> list[Token]:
    """The inline tokens of ``markdown`` (one paragraph's worth of inline Markdown)."""
    if not markdown:
        return []
    tokens = _inline_parser.parseInline(markdown)
    return tokens[0].children or [] if tokens else []


def inline_plain(markdown: str) -> str:
    """The words a reader sees: markup removed, links and images reduced to their text."""
    parts: list[str] = []
    for token in inline_tokens(markdown):
        if token.type in ("text", "code_inline", "text_special"):
            parts.append(token.content)
        elif token.type == "image":
            parts.append(token.content)
        elif token.type == "softbreak":
            parts.append(" ")
        elif token.type == "hardbreak":
            parts.append("\n")
    return "".join(parts)


def inline_text(markdown: str) -> str:
    """Inline Markdown → the text of an email's plain part.

    Emphasis marks go, code spans keep their content, a link becomes ``text (url)`` (just the URL when
    the text is the URL), an image ``[image: alt]``, a hard break a newline.
    """
    parts: list[str] = []
    link_stack: list[tuple[str, int]] = []  # (href, index in parts where the link text starts)
    for token in inline_tokens(markdown):
        if token.type in ("text", "code_inline", "text_special"):
            parts.append(token.content)
        elif token.type == "softbreak":
            parts.append(" ")
        elif token.type == "hardbreak":
            parts.append("\n")
        elif token.type == "image":
            parts.append(f"[image: {token.content}]" if token.content else "[image]")
        elif token.type == "link_open":
            link_stack.append((str(token.attrs.get("href", "")), len(parts)))
        elif token.type == "link_close" and link_stack:
            href, start = link_stack.pop()
            label = "".join(parts[start:])
            if href and href not in (label, f"mailto:{label}"):
                parts.append(f" ({href})")
    return "".join(parts)


def inline_html(markdown: str) -> str:
    """Inline Markdown → HTML (escaped; raw HTML cannot occur since the parser refuses it)."""
    return _inline_parser.renderInline(markdown) if markdown else ""


def inline_link_spans(markdown: str) -> list[tuple[int, int]]:
    """Character spans of ``markdown`` that are already links, images, autolinks or code spans.

    Guide references must never be linked inside one of these. The spans are found on the canonical
    syntax the readers write: ``[text](url)``, ``![alt](src)``, ``<scheme:…>`` and backtick runs.
    """
    spans: list[tuple[int, int]] = []
    index = 0
    length = len(markdown)
    while index < length:
        char = markdown[index]
        if char == "\\":
            index += 2
            continue
        if char == "`":
            run = re.match(r"`+", markdown[index:])
            assert run is not None
            fence = run.group(0)
            closing = markdown.find(fence, index + len(fence))
            if closing >= 0:
                spans.append((index, closing + len(fence)))
                index = closing + len(fence)
                continue
        if char == "<":
            autolink = re.match(r"<[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*>|<[^\s<>@]+@[^\s<>]+>", markdown[index:])
            if autolink:
                spans.append((index, index + autolink.end()))
                index += autolink.end()
                continue
        if char == "[" or (char == "!" and markdown.startswith("[", index + 1)):
            end = _link_end(markdown, index + (1 if char == "!" else 0))
            if end is not None:
                spans.append((index, end))
                index = end
                continue
        index += 1
    return spans


def _link_end(markdown: str, bracket: int) -> int | None:
    """End offset of ``[text](destination)`` starting at ``bracket``, or None if it is not a link."""
    depth = 0
    index = bracket
    while index < len(markdown):
        char = markdown[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                break
        index += 1
    else:
        return None
    if not markdown.startswith("(", index + 1):
        return None
    depth = 0
    index += 1
    while index < len(markdown):
        char = markdown[index]
        if char == "\\":
            index += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return None


def link_destination(url: str) -> str:
    """A URL written so it cannot end a Markdown link early: spaces and parentheses percent-encoded."""
    for char, encoded in ((" ", "%20"), ("(", "%28"), (")", "%29"), ("<", "%3C"), (">", "%3E"), ("|", "%7C")):
        url = url.replace(char, encoded)
    return url


def markdown_link(label_markdown: str, url: str, title: str = "") -> str:
    title_part = ' "' + title.replace("\\", "\\\\").replace('"', '\\"') + '"' if title else ""
    return f"[{label_markdown}]({link_destination(url)}{title_part})"


# ---------------------------------------------------------------------------------------------------
# Walking, counting, comparing


def walk(blocks: Iterable[Block]) -> Iterator[Block]:
    """Every block, depth first, including those inside lists and quotes."""
    for block in blocks:
        yield block
        if isinstance(block, ListBlock):
            for item in block.items:
                yield from walk(item)
        elif isinstance(block, Quote):
            yield from walk(block.blocks)


def inline_texts(blocks: Iterable[Block]) -> Iterator[str]:
    """The inline Markdown of every paragraph and table cell, nested ones included, in reading order:
    where guide references are looked for. Headings are left out: a heading is never linked."""
    for block in walk(blocks):
        if isinstance(block, Paragraph):
            yield block.text
        elif isinstance(block, Table):
            yield from (cell for row in (block.header, *block.rows) for cell in row)


def map_inline(block: Block, change: Callable[[str], str]) -> Block:
    """``block`` with ``change`` applied to the inline Markdown of its paragraphs and table cells,
    nested ones included (headings are left as they are)."""
    if isinstance(block, Paragraph):
        return Paragraph(change(block.text), continues=block.continues)
    if isinstance(block, ListBlock):
        return ListBlock(
            ordered=block.ordered,
            items=tuple(tuple(map_inline(inner, change) for inner in item) for item in block.items),
            start=block.start,
        )
    if isinstance(block, Quote):
        return Quote(tuple(map_inline(inner, change) for inner in block.blocks))
    if isinstance(block, Table):
        return Table(
            header=tuple(change(cell) for cell in block.header),
            rows=tuple(tuple(change(cell) for cell in row) for row in block.rows),
            align=block.align,
        )
    return block


def block_plain(block: Block) -> str:
    """The words of one block as a reader sees them (nested blocks included), space-separated."""
    if isinstance(block, Heading | Paragraph):
        return inline_plain(block.text)
    if isinstance(block, ListBlock):
        return " ".join(block_plain(inner) for item in block.items for inner in item)
    if isinstance(block, Quote):
        return " ".join(block_plain(inner) for inner in block.blocks)
    if isinstance(block, Code):
        return block.text
    if isinstance(block, Table):
        return " ".join(inline_plain(cell) for row in (block.header, *block.rows) for cell in row)
    if isinstance(block, Image):
        return block.title
    return ""


def count_words(text: str) -> int:
    """Whitespace-separated tokens that contain a letter or digit.

    "skin-to-skin" and "it's" are one word each; a lone dash or bullet is none.
    """
    return sum(1 for token in text.split() if any(char.isalnum() for char in token))


def block_words(block: Block) -> int:
    """Words a reader reads in ``block``; headings count none (they are not lesson length)."""
    if isinstance(block, Heading):
        return 0
    return count_words(block_plain(block))


def piece_separator(left: str) -> str:
    """What stands between two sentences of a paragraph: a space, or nothing after a full-width
    character (Japanese and Chinese write "。" with no space after it)."""
    return "" if left and unicodedata.east_asian_width(left[-1]) in ("W", "F") else " "


def join_pieces(blocks: Iterable[Block]) -> list[Block]:
    """Undo the splitter's sentence cuts: a continuing paragraph piece is joined to the piece before."""
    joined: list[Block] = []
    for block in blocks:
        if isinstance(block, Paragraph) and block.continues and joined and isinstance(joined[-1], Paragraph):
            previous = joined[-1]
            joined[-1] = Paragraph(previous.text + piece_separator(previous.text) + block.text, continues=previous.continues)
        else:
            joined.append(block)
    return joined


# ---------------------------------------------------------------------------------------------------
# JSON


def block_to_dict(block: Block) -> dict[str, Any]:
    """A JSON-ready dict with a ``kind`` key; :func:`block_from_dict` reverses it exactly."""
    if isinstance(block, Heading):
        return {"kind": "heading", "level": block.level, "text": block.text}
    if isinstance(block, Paragraph):
        data: dict[str, Any] = {"kind": "paragraph", "text": block.text}
        if block.continues:
            data["continues"] = True
        return data
    if isinstance(block, ListBlock):
        return {
            "kind": "list",
            "ordered": block.ordered,
            "start": block.start,
            "items": [[block_to_dict(inner) for inner in item] for item in block.items],
        }
    if isinstance(block, Quote):
        return {"kind": "quote", "blocks": [block_to_dict(inner) for inner in block.blocks]}
    if isinstance(block, Code):
        return {"kind": "code", "language": block.language, "text": block.text}
    if isinstance(block, Table):
        return {
            "kind": "table",
            "header": list(block.header),
            "align": list(block.align),
            "rows": [list(row) for row in block.rows],
        }
    if isinstance(block, Image):
        return {"kind": "image", "src": block.src, "alt": block.alt, "title": block.title}
    return {"kind": "rule"}


def block_from_dict(data: Mapping[str, Any]) -> Block:
    """Rebuild a block from :func:`block_to_dict`'s output; an unknown kind is a ValueError."""
    kind = data.get("kind")
    if kind == "heading":
        return Heading(text=str(data["text"]), level=int(data["level"]))
    if kind == "paragraph":
        return Paragraph(text=str(data["text"]), continues=bool(data.get("continues", False)))
    if kind == "list":
        return ListBlock(
            ordered=bool(data["ordered"]),
            start=int(data.get("start", 1)),
            items=tuple(tuple(block_from_dict(inner) for inner in item) for item in data["items"]),
        )
    if kind == "quote":
        return Quote(blocks=tuple(block_from_dict(inner) for inner in data["blocks"]))
    if kind == "code":
        return Code(text=str(data["text"]), language=str(data.get("language", "")))
    if kind == "table":
        return Table(
            header=tuple(str(cell) for cell in data["header"]),
            rows=tuple(tuple(str(cell) for cell in row) for row in data["rows"]),
            align=tuple(data.get("align", ())),
        )
    if kind == "image":
        return Image(src=str(data["src"]), alt=str(data.get("alt", "")), title=str(data.get("title", "")))
    if kind == "rule":
        return Rule()
    raise ValueError(f"unknown block kind {kind!r}; expected one of {', '.join(BLOCK_KINDS)}")


# ---------------------------------------------------------------------------------------------------
# Markdown source


_BLOCK_START = re.compile(r"^(\d{0,9})([#>+=|-]|[.)](?=\s|$))", re.MULTILINE)


def blocks_to_markdown(blocks: Iterable[Block]) -> str:
    """Write blocks back as Markdown (blank line between blocks): for review output and old readers."""
    return "\n\n".join(block_to_markdown(block) for block in blocks)


def block_to_markdown(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Paragraph):
        # Inline text that would start a block ("# 1", "- x", "1. x", "> x") when read as a document.
        return _BLOCK_START.sub(lambda found: found.group(1) + "\\" + found.group(2), block.text)
    if isinstance(block, ListBlock):
        lines: list[str] = []
        for number, item in enumerate(block.items, start=block.start):
            marker = f"{number}. " if block.ordered else "- "
            body = blocks_to_markdown(item) or ""
            indent = " " * len(marker)
            item_lines = body.split("\n")
            lines.append(marker + item_lines[0])
            lines.extend((indent + line) if line else "" for line in item_lines[1:])
        return "\n".join(lines)
    if isinstance(block, Quote):
        return "\n".join(("> " + line) if line else ">" for line in blocks_to_markdown(block.blocks).split("\n"))
    if isinstance(block, Code):
        fence = "```"
        while fence in block.text:
            fence += "`"
        return f"{fence}{block.language}\n{block.text}\n{fence}"
    if isinstance(block, Table):
        def row(cells: Iterable[str]) -> str:
            # Cells are inline Markdown, whose pipes are already escaped.
            return "| " + " | ".join(cells) + " |"

        marks = {"": "---", "left": ":--", "center": ":-:", "right": "--:"}
        align = block.align or ("",) * len(block.header)
        return "\n".join([row(block.header), "|" + "|".join(marks[a] for a in align) + "|", *map(row, block.rows)])
    if isinstance(block, Image):
        title = ' "' + block.title.replace('"', '\\"') + '"' if block.title else ""
        return f"![{escape_inline(block.alt)}]({link_destination(block.src)}{title})"
    return "---"
