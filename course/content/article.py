"""Parse a publisher's article into a title and sections of paragraphs.

Two input formats are understood:

* Markdown (``.md`` / ``.markdown``): optional ``---`` front matter of ``key: value`` lines, a
  ``# Title`` (or ``title:`` in the front matter), paragraphs separated by blank lines and ``##`` /
  ``###`` section headings.
* Plain text (anything else, typically ``.txt``): the first non-blank line is the title, then a lede,
  then sections whose headings are short lines that read like headings rather than sentences. See
  :func:`_is_heading_shaped` for the signals used.

The result is an :class:`Article`: pure data that the splitter turns into lessons. Anything the
parser cannot make sense of raises :class:`ArticleError` naming the source (and the line when there
is one), because a silent guess here would become a wrong email to every subscriber.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ArticleFormat = Literal["markdown", "text"]

MARKDOWN_SUFFIXES = (".md", ".markdown")
TEXT_SUFFIXES = (".txt", ".text")

# A plain-text heading is a short line: the seed articles' headings are 3-5 words, and a line of
# more than a dozen words is almost always a sentence that happens to lack a full stop.
MAX_HEADING_WORDS = 12
MAX_HEADING_CHARS = 100
# A first line longer than this is a paragraph, not a title: the file has no title.
MAX_TITLE_WORDS = 30

# Characters that end sentences, clauses or quotations. A heading never ends with one: "It works.",
# "Why not?", "As she said: “rest it”" are prose however short they are.
TERMINAL_PUNCTUATION = frozenset(".!?:;,…\"'”’»—–-")

# List items and block quotes are body text even when short and unpunctuated ("- flour").
_LIST_OR_QUOTE_MARKER = re.compile(r"^(?:[-*+•–]\s|\d+[.)]\s|>)")
# A sentence break inside the line ("It rose. Then it fell") means prose, unless the full stop
# belongs to a short abbreviation ("Dr. Lee's Method", "St. John").
_INNER_SENTENCE_BREAK = re.compile(r"(?P<word>[\w.]*)[.!?…]\s+\S")
_ABBREVIATIONS = frozenset(
    "dr mr mrs ms st mt jr sr prof no vol vs etc fig ch e.g i.e".split()
)
# A colon or semicolon followed by a lowercase word continues a sentence ("Stress matters: a lot");
# a heading's colon introduces a capitalised subtitle ("Step 2: Shape the Loaf").
_INNER_CLAUSE_BREAK = re.compile(r"[:;]\s+[a-z]")

_ATX_HEADING = re.compile(r"^(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?[ \t]*#*[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})")
_FRONT_MATTER_LINE = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)[ \t]*:[ \t]*(?P<value>.*)$")


class ArticleError(ValueError):
    """The article cannot be parsed; the message names the source and, where known, the line."""


class FrozenMeta(Mapping[str, str]):
    """Read-only front matter that, unlike ``types.MappingProxyType``, is hashable and picklable.

    An :class:`Article` is a frozen value that may be hashed, copied or pickled (e.g. to hand it to a
    worker), so its metadata has to be all three.
    """

    __slots__ = ("_pairs",)

    def __init__(self, pairs: Mapping[str, str] | None = None) -> None:
        self._pairs: tuple[tuple[str, str], ...] = tuple((pairs or {}).items())

    def __getitem__(self, key: str) -> str:
        for pair_key, value in self._pairs:
            if pair_key == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __hash__(self) -> int:
        return hash(frozenset(self._pairs))

    def __reduce__(self) -> tuple[type[FrozenMeta], tuple[dict[str, str]]]:
        return (FrozenMeta, (dict(self._pairs),))

    def __repr__(self) -> str:
        return f"FrozenMeta({dict(self._pairs)!r})"


@dataclass(frozen=True)
class Section:
    heading: str | None  # None for the lede part before the first heading
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Article:
    title: str
    sections: tuple[Section, ...]
    source: str  # path or "<string>"
    meta: Mapping[str, str] = FrozenMeta()  # front matter, read-only; empty for plain text

    @property
    def paragraphs(self) -> tuple[str, ...]:
        """All paragraphs of all sections, in reading order."""
        return tuple(paragraph for section in self.sections for paragraph in section.paragraphs)


def load_article(path: Path) -> Article:
    """Read ``path`` and parse it by its extension (``.md``/``.markdown`` or ``.txt``/``.text``).

    Steps: 1. refuse unknown extensions, 2. read the bytes, 3. refuse binary content (NUL bytes) and
    bytes that are not UTF-8, naming the offset, 4. hand the text to :func:`parse_article`.
    """
    source = str(path)
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        fmt: ArticleFormat = "markdown"
    elif suffix in TEXT_SUFFIXES:
        fmt = "text"
    else:
        known = ", ".join(MARKDOWN_SUFFIXES + TEXT_SUFFIXES)
        raise ArticleError(
            f"{source}: unknown article extension {suffix or '(none)'!r}; expected one of {known}"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArticleError(f"{source}: cannot read article: {exc.strerror or exc}") from exc
    nul_offset = raw.find(b"\x00")
    if nul_offset >= 0:
        raise ArticleError(f"{source}: binary file (NUL byte at offset {nul_offset}), not an article")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(
            f"{source}: not UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from exc
    return parse_article(text, source=source, fmt=fmt)


def parse_article(text: str, *, source: str = "<string>", fmt: ArticleFormat | None = None) -> Article:
    """Parse article ``text``. ``fmt`` None picks Markdown for a ``.md``/``.markdown`` source, else text.

    Line endings are normalised first, so CRLF files parse like LF ones.
    """
    if fmt is None:
        fmt = "markdown" if source.lower().endswith(MARKDOWN_SUFFIXES) else "text"
    if fmt not in ("markdown", "text"):
        raise ArticleError(f"{source}: unknown article format {fmt!r}; expected 'markdown' or 'text'")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        raise ArticleError(f"{source}: binary content (contains NUL characters), not an article")
    if not text.strip():
        raise ArticleError(f"{source}: empty article")
    if fmt == "markdown":
        return _parse_markdown(text, source)
    return _parse_text(text, source)


# ---------------------------------------------------------------------------------------------------
# Markdown


def _parse_markdown(text: str, source: str) -> Article:
    """Parse Markdown line by line.

    1. Split off the front matter (``---`` … ``---`` at the very top) into ``meta``.
    2. Walk the body lines, collecting a block of non-blank lines until a blank line, a heading or a
       thematic break (``---``, ``***``) ends it. Fenced code (``` or ~~~) is copied verbatim, blank
       lines included, so a ``# comment`` inside it is not a heading.
    3. The first ``#`` heading is the title unless the front matter already has ``title``; every other
       heading (``#`` to ``######``) starts a section. Paragraphs before the first section heading
       form the lede (heading None).
    4. A block is joined into one paragraph: wrapped lines with single spaces, but list blocks, block
       quotes and code keep their newlines because joining them would change their meaning.
    """
    lines = text.split("\n")
    meta, body_start = _split_front_matter(lines, source)
    title = meta.get("title", "").strip() or None
    title_line: int | None = None

    sections: list[Section] = []
    heading: str | None = None
    paragraphs: list[str] = []
    block: list[str] = []
    heading_seen = False

    def flush_block() -> None:
        if block:
            paragraphs.append(_join_block(block))
            block.clear()

    def close_section() -> None:
        flush_block()
        if heading is not None or paragraphs:
            sections.append(Section(heading, tuple(paragraphs)))
        paragraphs.clear()

    index = body_start
    while index < len(lines):
        line = lines[index]
        line_number = index + 1
        fence = _FENCE.match(line)
        if fence:
            flush_block()
            closing = fence.group("fence")
            code = [line]
            index += 1
            while index < len(lines) and not lines[index].lstrip().startswith(closing):
                code.append(lines[index])
                index += 1
            if index == len(lines):
                raise ArticleError(f"{source}:{line_number}: code fence {closing!r} is never closed")
            code.append(lines[index])
            paragraphs.append("\n".join(code))
            index += 1
            continue
        atx = _ATX_HEADING.match(line)
        if atx:
            heading_text = (atx.group("text") or "").strip()
            if not heading_text:
                raise ArticleError(f"{source}:{line_number}: empty heading {line.strip()!r}")
            # The first "# " heading is the title, unless the front matter named one; then an H1
            # repeating that title is still the title line rather than a section.
            is_title_line = title is None or heading_text.casefold() == title.casefold()
            if len(atx.group("hashes")) == 1 and is_title_line and title_line is None and not heading_seen:
                flush_block()
                title, title_line = heading_text, line_number
            else:
                close_section()
                heading, heading_seen = heading_text, True
        elif not line.strip() or _THEMATIC_BREAK.match(line):
            flush_block()
        else:
            block.append(line)
        index += 1
    close_section()

    if title is None:
        raise ArticleError(f"{source}: no title: expected a '# Title' line or 'title:' in the front matter")
    if not any(section.paragraphs for section in sections):
        where = f" (title at line {title_line})" if title_line else ""
        raise ArticleError(f"{source}: article {title!r}{where} has a title but no paragraphs")
    return Article(title=title, sections=tuple(sections), source=source, meta=FrozenMeta(meta))


def _split_front_matter(lines: list[str], source: str) -> tuple[dict[str, str], int]:
    """Return the front matter as a dict and the index of the first body line.

    1. Front matter is only recognised when ``---`` is the very first line.
    2. Find the closing ``---`` first, so a missing one is reported as such rather than as the
       first body line failing to be ``key: value``.
    3. Parse the lines in between: blank lines and ``#`` comments are skipped, values stay strings,
       a pair of matching surrounding quotes is removed, a repeated key is an error.
    """
    if not lines or lines[0].strip() != "---":
        return {}, 0
    closing = next((index for index in range(1, len(lines)) if lines[index].strip() == "---"), None)
    if closing is None:
        raise ArticleError(f"{source}:1: front matter opened with '---' is never closed by a second '---'")
    meta: dict[str, str] = {}
    for index in range(1, closing):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            continue
        pair = _FRONT_MATTER_LINE.match(stripped)
        if pair is None:
            raise ArticleError(f"{source}:{index + 1}: front matter line {stripped!r} is not 'key: value'")
        key, value = pair.group("key"), pair.group("value").strip()
        if key in meta:
            raise ArticleError(f"{source}:{index + 1}: front matter key {key!r} is given twice")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        meta[key] = value
    return meta, closing + 1


def _join_block(block_lines: list[str]) -> str:
    """Join a block of non-blank lines into one paragraph.

    Lists and block quotes keep one item per line (stripped of trailing spaces); prose lines that were
    wrapped are joined with single spaces.
    """
    if any(_LIST_OR_QUOTE_MARKER.match(line.lstrip()) for line in block_lines):
        return "\n".join(line.rstrip() for line in block_lines)
    return " ".join(" ".join(line.split()) for line in block_lines)


# ---------------------------------------------------------------------------------------------------
# Plain text


def _parse_text(text: str, source: str) -> Article:
    """Parse plain text.

    1. The first non-blank line is the title. A first line too long to be a title
       (> ``MAX_TITLE_WORDS`` words) means the file has none.
    2. The rest is cut into blocks. If it has blank lines between blocks, each blank-line separated
       block is a paragraph (wrapped lines joined); otherwise every line is a paragraph, as in files
       pasted from a CMS where a paragraph is one long line.
    3. Each block is classified as heading or paragraph with :func:`_is_heading`; paragraphs before
       the first heading are the lede.
    """
    lines = text.split("\n")
    first = next(index for index, line in enumerate(lines) if line.strip())
    title = " ".join(lines[first].split())
    if len(title.split()) > MAX_TITLE_WORDS:
        raise ArticleError(
            f"{source}:{first + 1}: no title: the first line has {len(title.split())} words and reads like a "
            f"paragraph (a title is at most {MAX_TITLE_WORDS} words on a line of its own)"
        )
    blocks = _text_blocks(lines[first + 1 :])
    if not blocks:
        raise ArticleError(f"{source}: article {title!r} (line {first + 1}) has a title but no paragraphs")

    sections: list[Section] = []
    heading: str | None = None
    paragraphs: list[str] = []
    for index, (block_text, _line_count) in enumerate(blocks):
        if _is_heading(blocks, index):
            if heading is not None or paragraphs:
                sections.append(Section(heading, tuple(paragraphs)))
            heading, paragraphs = " ".join(block_text.split()), []
        else:
            paragraphs.append(block_text)
    sections.append(Section(heading, tuple(paragraphs)))
    # The heading rules guarantee a paragraph after every heading, so no section is empty.
    return Article(title=title, sections=tuple(sections), source=source)


def _text_blocks(body: list[str]) -> list[tuple[str, int]]:
    """Cut the body lines into ``(paragraph text, number of source lines)`` blocks.

    Blank-line mode applies when a blank line separates two non-blank lines; leading blank lines
    (e.g. between the title and the lede) do not count.
    """
    stripped = [line.rstrip() for line in body]
    while stripped and not stripped[0].strip():
        stripped.pop(0)
    while stripped and not stripped[-1].strip():
        stripped.pop()
    blank_separated = any(not line.strip() for line in stripped)
    if not blank_separated:
        return [(" ".join(line.split()), 1) for line in stripped]
    blocks: list[tuple[str, int]] = []
    current: list[str] = []
    for line in stripped + [""]:
        if line.strip():
            current.append(line)
        elif current:
            blocks.append((_join_block(current), len(current)))
            current = []
    return blocks


def _is_heading(blocks: list[tuple[str, int]], index: int) -> bool:
    """Decide whether block ``index`` is a section heading, from its shape and its context.

    Context signals, on top of :func:`_is_heading_shaped`:

    * it is not the last block: a heading introduces text, so a short closing line is prose;
    * the next block is a body paragraph, i.e. not heading-shaped itself. Of two short unpunctuated
      lines in a row only the second, the one directly above body text, is the heading.
    """
    text, line_count = blocks[index]
    if not _is_heading_shaped(text, line_count):
        return False
    if index + 1 >= len(blocks):
        return False
    next_text, next_line_count = blocks[index + 1]
    return not _is_heading_shaped(next_text, next_line_count)


def _is_heading_shaped(text: str, line_count: int) -> bool:
    """True when a block looks like a heading on its own. All of these must hold:

    1. it is a single source line (a wrapped block is a paragraph);
    2. it is short: at most ``MAX_HEADING_WORDS`` words and ``MAX_HEADING_CHARS`` characters;
    3. it does not end with sentence, clause or quotation punctuation (``TERMINAL_PUNCTUATION``),
       so "It works.", "Why not?" and a short quotation stay paragraphs;
    4. it does not start with a list marker or a block quote marker;
    5. it does not start with a lowercase letter (headings are capitalised; a lowercase start is a
       sentence fragment);
    6. it has no sentence break inside ("It rose. Then it fell") other than after an abbreviation,
       and no colon or semicolon followed by a lowercase word ("Stress matters: a lot").
    """
    words = text.split()
    if line_count != 1 or not words:
        return False
    if len(words) > MAX_HEADING_WORDS or len(text) > MAX_HEADING_CHARS:
        return False
    if text.rstrip()[-1] in TERMINAL_PUNCTUATION:
        return False
    if _LIST_OR_QUOTE_MARKER.match(text.lstrip()):
        return False
    first_letter = next((char for char in text if char.isalpha()), "")
    if first_letter.islower():
        return False
    for sentence_break in _INNER_SENTENCE_BREAK.finditer(text):
        word = sentence_break.group("word")
        # A single capital is an initial ("J. Smith") or a numbered part ("I. Origins").
        if word.lower() not in _ABBREVIATIONS and not (len(word) == 1 and word.isupper()):
            return False
    return _INNER_CLAUSE_BREAK.search(text) is None
