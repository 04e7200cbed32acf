"""Markdown → title, front matter and blocks, with markdown-it-py (CommonMark + GFM tables,
strikethrough, footnotes and YAML front matter from mdit-py-plugins).

A real parser gets right what a line-based reader did not: setext headings, a ``##`` directly
followed by a ``###`` (both kept, with their levels), reference-style links (resolved into inline
links), tables, nested lists, indented code and HTML comments such as ``<!--more-->`` (dropped).
Other raw HTML blocks are converted through the HTML reader, so an embedded ``<table>`` is a table.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.front_matter import front_matter_plugin

from course.content.reading import ArticleError, FrozenMeta, MetaValue
from course.content.html_reader import html_to_markdown
from course.content.blocks import (
    Alignment,
    Block,
    Code,
    Heading,
    Image,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Table,
    escape_inline,
    inline_plain,
    link_destination,
)

_parser = (
    MarkdownIt("commonmark", {"html": True})
    .enable(["table", "strikethrough"])
    .use(front_matter_plugin)
    .use(footnote_plugin)
)

_HTML_COMMENT = re.compile(r"\s*(?:<!--.*?-->\s*)+", re.DOTALL)
_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
# Inline HTML with a Markdown meaning ("A <b>bold</b> word" in a newsletter or an exported post):
# written as the Markdown emphasis it stands for, so it survives as <strong>/<em>/<s> in HTML.
_EMPHASIS_TAG = re.compile(r"<(/?)(b|strong|i|em|s|del|strike)(?:\s[^>]*)?>", re.IGNORECASE)
_EMPHASIS_MARKER = {"b": "**", "strong": "**", "i": "*", "em": "*", "s": "~~", "del": "~~", "strike": "~~"}
_CLOSING_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*$")


def read_markdown(text: str, source: str) -> tuple[str, tuple[Block, ...], FrozenMeta]:
    """Parse Markdown ``text`` into ``(title, blocks, meta)``.

    1. Front matter: a ``---`` first line must be closed by ``---`` (or ``...``); what is between is
       YAML mapping keys to scalars or lists (``tags: [a, b]`` or one ``- item`` per line).
    2. Parse the rest with markdown-it into a syntax tree and convert each node into blocks
       (:func:`_blocks_of`).
    3. The title is the front matter's ``title``, else the first heading if it is an H1 that comes
       before any other heading. An H1 repeating the front-matter title is the title line too. The
       title's heading block is removed, so it can never be repeated as the first heading of a lesson.
    """
    lines = text.split("\n")
    if lines and lines[0].rstrip() == "---" and not any(line.rstrip() in ("---", "...") for line in lines[1:]):
        raise ArticleError(f"{source}:1: front matter opened with '---' is never closed by a second '---'")
    env: dict[str, Any] = {}
    tokens = _parser.parse(text, env)
    meta = FrozenMeta()
    if tokens and tokens[0].type == "front_matter":
        meta = _front_matter(tokens[0], source)
        tokens = tokens[1:]
    tree = SyntaxTreeNode(tokens)
    blocks = _blocks_of(tree.children, source, lines)

    meta_title = meta.get("title")
    title = meta_title.strip() if isinstance(meta_title, str) and meta_title.strip() else None
    first_heading = next((index for index, block in enumerate(blocks) if isinstance(block, Heading)), None)
    if first_heading is not None:
        heading = blocks[first_heading]
        assert isinstance(heading, Heading)
        heading_title = " ".join(inline_plain(heading.text).split())
        if heading.level == 1 and (title is None or heading_title.casefold() == title.casefold()):
            title = heading_title
            blocks = blocks[:first_heading] + blocks[first_heading + 1 :]
    if title is None:
        raise ArticleError(f"{source}: no title: expected a '# Title' line or 'title:' in the front matter")
    return title, tuple(blocks), meta


def markdown_blocks(text: str, source: str = "<fragment>") -> tuple[Block, ...]:
    """The blocks of a Markdown fragment that has no title (a stored paragraph, a newsletter body)."""
    tokens = _parser.parse(text, {})
    return tuple(_blocks_of(SyntaxTreeNode(tokens).children, source, text.split("\n")))


def newsletter_blocks(text: str) -> tuple[Block, ...]:
    """A newsletter's Markdown body in the lessons' document model (raw HTML in it converted like an
    HTML article's, so a <table> becomes a table block and tags without a block meaning drop out).

    A newsletter has no front matter: a body opening with ``---`` starts with a rule, so the body is
    read after a blank line, where the front-matter rule never applies. Raises ArticleError (an
    unclosed code fence, an empty heading), which the campaign editor reports on the body field."""
    try:
        return markdown_blocks("\n" + text, source="<body>")
    except ArticleError as exc:
        # "<body>:4: code fence …" counted the blank line read first: say "line 3 of the body: …".
        where = re.match(r"<body>:(\d+): ", str(exc))
        if where is None:
            raise ArticleError(str(exc).replace("<body>", "the body")) from None
        raise ArticleError(f"line {int(where.group(1)) - 1} of the body: {str(exc)[where.end():]}") from None


def _front_matter(token: Token, source: str) -> FrozenMeta:
    """YAML front matter → read-only meta of strings and tuples of strings."""
    try:
        document = yaml.safe_load(token.content) if token.content.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ArticleError(f"{source}{line}: front matter is not valid YAML: {problem}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ArticleError(
            f"{source}:2: front matter must be 'key: value' lines, got {type(document).__name__} {document!r}"
        )
    meta: dict[str, MetaValue] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            raise ArticleError(f"{source}: front matter key {key!r} holds a mapping; expected text or a list")
        if isinstance(value, list):
            if any(isinstance(item, dict | list) for item in value):
                raise ArticleError(f"{source}: front matter key {key!r} must be a list of plain values")
            meta[str(key)] = tuple(_scalar(item) for item in value)
        else:
            meta[str(key)] = _scalar(value)
    return FrozenMeta(meta)


def _scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return str(value)


def _line(node: SyntaxTreeNode) -> int:
    return node.map[0] + 1 if node.map else 0


def _blocks_of(nodes: list[SyntaxTreeNode], source: str, lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    for node in nodes:
        blocks.extend(_node_blocks(node, source, lines))
    return blocks


def _node_blocks(node: SyntaxTreeNode, source: str, lines: list[str]) -> list[Block]:
    """One syntax-tree node → zero or more blocks."""
    kind = node.type
    if kind == "heading":
        text = _inline(node.children[0]) if node.children else ""
        if not text.strip():
            raise ArticleError(f"{source}:{_line(node)}: empty heading {lines[_line(node) - 1].strip()!r}")
        return [Heading(text=text.strip(), level=int(node.tag[1]))]
    if kind == "paragraph":
        inline = node.children[0] if node.children else None
        if inline is None:
            return []
        image = _lone_image(inline)
        if image is not None:
            return [image]
        text = _inline(inline).strip()
        return [Paragraph(text)] if text else []
    if kind in ("bullet_list", "ordered_list"):
        items = tuple(tuple(_blocks_of(item.children, source, lines)) for item in node.children)
        start = int(node.attrs.get("start", 1)) if kind == "ordered_list" else 1
        return [ListBlock(ordered=kind == "ordered_list", items=items, start=start)]
    if kind == "blockquote":
        inner = _blocks_of(node.children, source, lines)
        return [Quote(tuple(inner))] if inner else []
    if kind == "fence":
        _check_fence_closed(node, source, lines)
        language = node.info.split()[0] if node.info.strip() else ""
        return [Code(text=node.content.rstrip("\n"), language=language)]
    if kind == "code_block":
        return [Code(text=node.content.rstrip("\n"))]
    if kind == "table":
        return [_table(node)]
    if kind == "hr":
        return [Rule()]
    if kind == "html_block":
        return _html_block(node.content, source)
    if kind == "footnote_block":
        return _footnotes(node, source, lines)
    # Anything else (a plugin's node we do not know) keeps its text rather than losing words.
    text = " ".join(node.content.split()) if node.content else ""
    return [Paragraph(escape_inline(text))] if text else []


def _check_fence_closed(node: SyntaxTreeNode, source: str, lines: list[str]) -> None:
    """markdown-it closes an open fence at the end of the document; for an article that swallows
    everything after it into one code block, so it is an error instead."""
    assert node.map is not None
    start, end = node.map
    last = lines[end - 1] if end - 1 < len(lines) else ""
    closing = _CLOSING_FENCE.match(last)
    if end - 1 == start or closing is None or not closing.group(1).startswith(node.markup[0]):
        raise ArticleError(f"{source}:{start + 1}: code fence {node.markup!r} is never closed")


def _table(node: SyntaxTreeNode) -> Table:
    header: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = []
    align: tuple[Alignment, ...] = ()
    for section in node.children:
        for row in section.children:
            cells = tuple(
                re.sub(r"(?<!\\)\|", r"\\|", _inline(cell.children[0]).strip()) if cell.children else ""
                for cell in row.children
            )
            if section.type == "thead":
                header = cells
                align = tuple(_alignment(cell.attrs.get("style")) for cell in row.children)
            else:
                rows.append(cells + ("",) * (len(header) - len(cells)))
    return Table(header=header, rows=tuple(rows), align=align)


def _alignment(style: object) -> Alignment:
    value = str(style or "").removeprefix("text-align:").strip()
    return value if value in ("left", "center", "right") else ""  # type: ignore[return-value]


def _html_block(html: str, source: str) -> list[Block]:
    if _HTML_COMMENT.fullmatch(html):
        return []  # "<!--more-->", "<!-- wp:paragraph -->" and other notes to the CMS
    # An HTML block inside a Markdown article (a ``<table>``, a ``<figure>``): read as the Markdown
    # it converts to.
    markdown = html_to_markdown(html)
    if not markdown.strip():
        return []
    _, blocks, _ = read_markdown(f"# -\n\n{markdown}", source)
    return list(blocks)


def _footnotes(node: SyntaxTreeNode, source: str, lines: list[str]) -> list[Block]:
    """Footnotes become numbered notes at the end of the article: "[1] The note text"."""
    notes: list[Block] = []
    for footnote in node.children:
        number = int(footnote.meta.get("id", len(notes))) + 1
        inner = _blocks_of(footnote.children, source, lines)
        if inner and isinstance(inner[0], Paragraph):
            inner[0] = Paragraph(f"\\[{number}\\] " + inner[0].text)
        else:
            inner.insert(0, Paragraph(f"\\[{number}\\]"))
        notes.extend(inner)
    return notes


def _lone_image(inline: SyntaxTreeNode) -> Image | None:
    """A paragraph that holds only an image (and whitespace) is an image block."""
    children = [child for child in inline.children if not (child.type == "text" and not child.content.strip())]
    children = [child for child in children if child.type != "softbreak"]
    if len(children) != 1 or children[0].type != "image":
        return None
    image = children[0]
    return Image(
        src=str(image.attrs.get("src", "")),
        alt=" ".join(_plain_children(image).split()),
        title=str(image.attrs.get("title", "") or ""),
    )


def _plain_children(node: SyntaxTreeNode) -> str:
    return "".join(child.content if child.type in ("text", "code_inline") else _plain_children(child) for child in node.children)


# ---------------------------------------------------------------------------------------------------
# Inline tokens → canonical inline Markdown


def _inline(inline: SyntaxTreeNode) -> str:
    tokens = inline.to_tokens()
    # to_tokens() of an inline node is [inline token]; its children are the inline token stream.
    return inline_markdown(tokens[0].children or [] if tokens else [])


def inline_markdown(tokens: list[Token]) -> str:
    """Write an inline token stream as canonical inline Markdown (see :mod:`course.content.blocks`).

    Emphasis ``*``, strong ``**``, strikethrough ``~~``, code spans with a fence longer than any
    backtick run inside, links and images inline with their resolved destination, ``<br>`` and hard
    breaks as a backslash-newline, ``<b>``/``<strong>``, ``<i>``/``<em>`` and ``<s>``/``<del>`` as
    the emphasis they stand for, footnote references as ``[n]``, other inline HTML tags dropped
    (their text stays). Whitespace runs become one space.
    """
    parts: list[str] = []
    open_links: list[Token] = []  # links do not nest in CommonMark, so this holds at most one
    opened_marker = ""  # an emphasis tag just opened: space after it moves before its marker
    open_emphasis: list[tuple[str, int]] = []  # (marker, its index in parts) of tags not yet closed
    for token in tokens:
        kind = token.type
        if opened_marker and kind in ("text", "text_special") and token.content[:1].isspace():
            parts[-1] = " " + parts[-1]  # "<b> bold" → " **bold": Markdown wants no space inside
            token = token.copy(content=token.content.lstrip())
        opened_marker = ""
        if kind in ("text", "text_special"):
            parts.append(_escape_keeping_edges(token.content))
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\\\n")
        elif kind == "code_inline":
            parts.append(_code_span(token.content))
        elif kind in ("em_open", "em_close"):
            parts.append("*")
        elif kind in ("strong_open", "strong_close"):
            parts.append("**")
        elif kind in ("s_open", "s_close"):
            parts.append("~~")
        elif kind == "link_open":
            parts.append("[")
            open_links.append(token)
        elif kind == "link_close":
            link = open_links.pop() if open_links else None
            href = str(link.attrs.get("href", "")) if link else ""
            title = str(link.attrs.get("title", "") or "") if link else ""
            title_part = ' "' + title.replace("\\", "\\\\").replace('"', '\\"') + '"' if title else ""
            parts.append(f"]({link_destination(href)}{title_part})")
        elif kind == "image":
            alt = inline_markdown(token.children or [])
            title = str(token.attrs.get("title", "") or "")
            title_part = ' "' + title.replace('"', '\\"') + '"' if title else ""
            parts.append(f"![{alt}]({link_destination(str(token.attrs.get('src', '')))}{title_part})")
        elif kind == "html_inline":
            emphasis = _EMPHASIS_TAG.fullmatch(token.content.strip())
            if _BREAK_TAG.fullmatch(token.content.strip()):
                parts.append("\\\n")
            elif emphasis and not emphasis.group(1):
                opened_marker = _EMPHASIS_MARKER[emphasis.group(2).lower()]
                open_emphasis.append((opened_marker, len(parts)))
                parts.append(opened_marker)
            elif emphasis and any(marker == _EMPHASIS_MARKER[emphasis.group(2).lower()] for marker, _ in open_emphasis):
                marker = _EMPHASIS_MARKER[emphasis.group(2).lower()]
                innermost = max(i for i, (open_marker, _) in enumerate(open_emphasis) if open_marker == marker)
                del open_emphasis[innermost]
                if parts[-1].strip() == marker:  # "<b></b>": nothing to emphasise
                    parts[-1] = parts[-1].replace(marker, "")
                else:
                    # "bold </b>" → "bold** ": Markdown wants no space inside the closing marker.
                    last = parts[-1]
                    trailing = last[len(last.rstrip()) :]
                    parts[-1] = last.rstrip()
                    parts.append(marker + trailing)
        elif kind == "footnote_ref":
            parts.append(f"\\[{int(token.meta.get('id', 0)) + 1}\\]")
        elif token.children:
            parts.append(inline_markdown(token.children))
        elif token.content:
            parts.append(_escape_keeping_edges(token.content))
    for marker, index in open_emphasis:  # "<b>never closed": the tag is dropped, its text stays
        parts[index] = parts[index].replace(marker, "")
    # Collapse spaces that markup removal left doubled, but keep hard breaks.
    return re.sub(r"(?<!\\) {2,}", " ", "".join(parts))


def _escape_keeping_edges(text: str) -> str:
    if not text:
        return ""
    escaped = escape_inline(text)
    leading = " " if text[0].isspace() else ""
    trailing = " " if text[-1].isspace() and text.strip() else ""
    return leading + escaped + trailing


def _code_span(content: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {content} " if content.startswith("`") or content.endswith("`") or (
        content.startswith(" ") and content.endswith(" ") and content.strip()
    ) else content
    return f"{fence}{padded}{fence}"
