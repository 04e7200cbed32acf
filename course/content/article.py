"""Read a publisher's article — Markdown, plain text or HTML — into one document model.

* Markdown (``.md`` / ``.markdown``): see :mod:`course.content.markdown_reader`.
* Plain text (``.txt`` / ``.text``): see :mod:`course.content.text_reader`.
* HTML (``.html`` / ``.htm``: a WordPress or Ghost export, a saved web page): see
  :mod:`course.content.html_reader`.

The result is an :class:`Article`: a title, front matter and a sequence of blocks
(:mod:`course.content.blocks`), pure data that the splitter turns into lessons. Anything the readers
cannot make sense of raises :class:`ArticleError` naming the source (and the line when there is one),
because a silent guess here would become a wrong email to every subscriber.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from course.content.blocks import Block, Heading, blocks_to_markdown, inline_plain
from course.content.html_reader import decode_html, html_markdown
from course.content.markdown_reader import read_markdown
from course.content.reading import ArticleError, FrozenMeta, MetaValue
from course.content.text_reader import read_text

ArticleFormat = Literal["markdown", "text", "html"]

MARKDOWN_SUFFIXES = (".md", ".markdown")
TEXT_SUFFIXES = (".txt", ".text")
HTML_SUFFIXES = (".html", ".htm")

@dataclass(frozen=True)
class Section:
    """A heading and the Markdown of the blocks under it: the article seen as before blocks existed."""

    heading: str | None  # None for the lede part before the first heading
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Article:
    title: str  # plain text
    blocks: tuple[Block, ...]  # the body; the title is not among them
    source: str  # path or "<string>"
    meta: Mapping[str, MetaValue] = FrozenMeta()  # front matter, read-only; empty for plain text

    @property
    def sections(self) -> tuple[Section, ...]:
        """The body grouped under its headings (of any level), each other block as Markdown."""
        sections: list[Section] = []
        heading: str | None = None
        paragraphs: list[str] = []
        for block in self.blocks:
            if isinstance(block, Heading):
                if heading is not None or paragraphs:
                    sections.append(Section(heading, tuple(paragraphs)))
                heading, paragraphs = inline_plain(block.text), []
            else:
                paragraphs.append(blocks_to_markdown([block]))
        if heading is not None or paragraphs:
            sections.append(Section(heading, tuple(paragraphs)))
        return tuple(sections)

    @property
    def paragraphs(self) -> tuple[str, ...]:
        """Every block but the headings, as Markdown, in reading order."""
        return tuple(blocks_to_markdown([block]) for block in self.blocks if not isinstance(block, Heading))

    @property
    def headings(self) -> tuple[Heading, ...]:
        return tuple(block for block in self.blocks if isinstance(block, Heading))


def article_format(path: Path) -> ArticleFormat:
    """The format a file is read as, by its extension; an unknown extension is an ArticleError."""
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in HTML_SUFFIXES:
        return "html"
    known = ", ".join(MARKDOWN_SUFFIXES + TEXT_SUFFIXES + HTML_SUFFIXES)
    raise ArticleError(f"{path}: unknown article extension {suffix or '(none)'!r}; expected one of {known}")


def load_article(path: Path) -> Article:
    """Read ``path`` and parse it by its extension (Markdown, plain text or HTML).

    Steps: 1. refuse unknown extensions, 2. read the bytes, 3. refuse binary content (NUL bytes) and
    bytes that are not UTF-8, naming the offset (an HTML file may declare another charset in a
    ``<meta>`` tag and is decoded with it), 4. hand the text to :func:`parse_article`.
    """
    source = str(path)
    fmt = article_format(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArticleError(f"{source}: cannot read article: {exc.strerror or exc}") from exc
    nul_offset = raw.find(b"\x00")
    if nul_offset >= 0:
        raise ArticleError(f"{source}: binary file (NUL byte at offset {nul_offset}), not an article")
    if fmt == "html":
        text = decode_html(raw, source)
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ArticleError(
                f"{source}: not UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at offset {exc.start})"
            ) from exc
    return parse_article(text, source=source, fmt=fmt)


def parse_article(text: str, *, source: str = "<string>", fmt: ArticleFormat | None = None) -> Article:
    """Parse article ``text``. ``fmt`` None picks the format from the source's extension (plain text
    when it has none of the known ones).

    Line endings and a byte-order mark are normalised first, so CRLF files parse like LF ones.
    """
    if fmt is None:
        lowered = source.lower()
        fmt = (
            "markdown" if lowered.endswith(MARKDOWN_SUFFIXES) else "html" if lowered.endswith(HTML_SUFFIXES) else "text"
        )
    if fmt not in ("markdown", "text", "html"):
        raise ArticleError(f"{source}: unknown article format {fmt!r}; expected 'markdown', 'text' or 'html'")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        raise ArticleError(f"{source}: binary content (contains NUL characters), not an article")
    if not text.strip():
        raise ArticleError(f"{source}: empty article")
    if fmt == "markdown":
        title, blocks, meta = read_markdown(text, source)
    elif fmt == "html":
        # HTML is read as the Markdown it converts to, with the page's own metadata.
        markdown, meta = html_markdown(text, source)
        title, blocks, _ = read_markdown(markdown, source)
    else:
        title, blocks, meta = read_text(text, source)
    if not any(not isinstance(block, Heading) for block in blocks):
        raise ArticleError(f"{source}: article {title!r} has a title but no paragraphs")
    return Article(title=title, blocks=blocks, source=source, meta=meta)
