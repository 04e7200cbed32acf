"""Plain text → title and blocks, deciding which short lines are section headings.

Plain text has no markup, so a heading is a guess. A short line is taken for a heading only when
several signals agree (see :func:`heading_verdicts`); each one comes from a way ordinary copy was
mistaken for a heading — a quotation, an attribution, the last item of an unmarked list, a sentence
in a script whose full stop is not ".". ``tests/content/test_heading_detection.py`` measures the
rules on a labelled set of articles in English, German and French and asserts a floor on precision
and recall.

Lines starting with list markers (``-``, ``*``, ``•``, ``1.``, ``1)``, and ``・``, ``●``, ``※`` with or
without a space after them) become lists and lines starting
with ``>`` a block quote, so numbered steps stay steps.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from course.content.reading import ArticleError, FrozenMeta
from course.content.blocks import Block, Heading, ListBlock, Paragraph, Quote, escape_inline

# A plain-text heading is short: real headings are 2-8 words, and a line of more than a dozen words
# is almost always a sentence that happens to lack a full stop.
MAX_HEADING_WORDS = 12
MAX_HEADING_CHARS = 100
# Scripts written without spaces (Chinese, Japanese) are measured in characters instead.
MAX_HEADING_CJK_CHARS = 30
# A first line longer than this is a paragraph, not a title: the file has no title.
MAX_TITLE_WORDS = 30
# A question is a heading only when it is at least this long ("Why not?" is a reply, "How Long Does
# It Keep?" a heading) and the paragraph under it has at least QUESTION_BODY_WORDS words.
MIN_QUESTION_HEADING_WORDS = 3
QUESTION_BODY_WORDS = 12
# A run of this many heading-shaped lines in a row is an unmarked list, not headings.
LIST_RUN_LINES = 3

# Characters that end sentences or clauses in Latin, Greek, Cyrillic, CJK, Arabic and Devanagari
# scripts, and closing quotation marks. A heading never ends with one.
SENTENCE_END = frozenset(".!;:,…。！；：，、．｡؟۔।॥")
QUESTION_MARKS = frozenset("?？¿؟")
CLOSING_QUOTES = frozenset("\"'”’»«“‘」』›‹")
# A line opening with a quotation mark is a quotation; one opening with a dash is an attribution
# ("— Dr. Ana Ruiz") or a dialogue line.
OPENING_QUOTES = frozenset("\"'“”„‚‘’«»「『‹›")
ATTRIBUTION_DASHES = frozenset("—–-~―")

# Japanese and Chinese bullets ("・", "●", "※", and "•" as typed there) need no space after them.
_LIST_MARKER = re.compile(
    r"^\s{0,3}(?:(?:(?P<bullet>[-*+•–·▪])|(?P<number>\d{1,3})[.)])\s+|(?P<wide>[・●※•])\s*)(?P<text>\S.*)$"
)
_QUOTE_MARKER = re.compile(r"^\s{0,3}>\s?(?P<text>.*)$")
# A sentence break inside the line ("It rose. Then it fell") means prose, unless the full stop
# belongs to a short abbreviation ("Dr. Lee's Method", "St. John").
_INNER_SENTENCE_BREAK = re.compile(r"(?P<word>[\w.]*)[.!?…。！？]\s*\S")
_ABBREVIATIONS = frozenset("dr mr mrs ms st mt jr sr prof no nr vol vs etc fig ch bzw ca dt e.g i.e z.b u.a".split())
# A colon or semicolon followed by a lowercase word continues a sentence ("Stress matters: a lot");
# a heading's colon introduces a capitalised subtitle ("Step 2: Shape the Loaf").
_INNER_CLAUSE_BREAK = re.compile(r"[:;]\s+[^\W\d_]")


@dataclass(frozen=True)
class _RawBlock:
    lines: tuple[str, ...]  # stripped source lines
    first_line: int  # 1-based line number in the file

    @property
    def text(self) -> str:
        return " ".join(" ".join(line.split()) for line in self.lines)


def read_text(text: str, source: str) -> tuple[str, tuple[Block, ...], FrozenMeta]:
    """Parse plain text into ``(title, blocks, meta)``; plain text has no front matter.

    1. The first non-blank line is the title. A first line too long to be a title
       (> ``MAX_TITLE_WORDS`` words) means the file has none.
    2. The rest is cut into raw blocks (:func:`_raw_blocks`): blank-line separated when the body has
       blank lines, else one line each, as in files pasted from a CMS.
    3. Runs of list-marker lines become lists, runs of ``>`` lines quotes.
    4. Every other block is a paragraph or, when :func:`heading_verdicts` says so, a level-2 heading.
    """
    lines = text.split("\n")
    first = next(index for index, line in enumerate(lines) if line.strip())
    title = " ".join(lines[first].split())
    if len(title.split()) > MAX_TITLE_WORDS:
        raise ArticleError(
            f"{source}:{first + 1}: no title: the first line has {len(title.split())} words and reads like a "
            f"paragraph (a title is at most {MAX_TITLE_WORDS} words on a line of its own)"
        )
    raw_blocks = _raw_blocks(lines, first + 1)
    if not raw_blocks:
        raise ArticleError(f"{source}: article {title!r} (line {first + 1}) has a title but no paragraphs")
    verdicts = heading_verdicts([block.lines for block in raw_blocks])
    blocks: list[Block] = []
    for raw, is_heading in zip(raw_blocks, verdicts):
        if is_heading:
            blocks.append(Heading(escape_inline(raw.text), level=2))
            continue
        structured = _structured_block(raw.lines)
        blocks.append(structured if structured is not None else Paragraph(escape_inline(raw.text)))
    return title, tuple(blocks), FrozenMeta()


def _raw_blocks(lines: list[str], start: int) -> list[_RawBlock]:
    """Cut the body lines into blocks of stripped lines.

    Blank-line mode applies when a blank line separates two non-blank lines (leading and trailing
    blank lines do not count). In line mode each line is a block, except that consecutive list-marker
    lines, and consecutive ``>`` lines, stay together as one list or quote.
    """
    body = [(start + index + 1, line.strip()) for index, line in enumerate(lines[start:])]
    while body and not body[0][1]:
        body.pop(0)
    while body and not body[-1][1]:
        body.pop()
    blocks: list[_RawBlock] = []
    if any(not line for _, line in body):
        current: list[tuple[int, str]] = []
        for number, line in body + [(0, "")]:
            if line:
                current.append((number, line))
            elif current:
                blocks.append(_RawBlock(tuple(text for _, text in current), current[0][0]))
                current = []
        return blocks
    for number, line in body:
        previous = blocks[-1] if blocks else None
        if previous is not None and _same_structure(previous.lines[-1], line) and _structure(line):
            blocks[-1] = _RawBlock(previous.lines + (line,), previous.first_line)
        else:
            blocks.append(_RawBlock((line,), number))
    return blocks


def _structure(line: str) -> str:
    if _LIST_MARKER.match(line):
        return "list"
    if _QUOTE_MARKER.match(line) and line.lstrip().startswith(">"):
        return "quote"
    return ""


def _same_structure(previous: str, line: str) -> bool:
    return _structure(previous) == _structure(line)


def _structured_block(lines: tuple[str, ...]) -> Block | None:
    """A block whose lines all carry list markers is a list (ordered when numbered); one whose lines
    all start with ``>`` is a quote. A wrapped item (a line without a marker) joins the item above."""
    if all(line.lstrip().startswith(">") for line in lines):
        inner = " ".join(_QUOTE_MARKER.match(line).group("text") for line in lines)  # type: ignore[union-attr]
        return Quote((Paragraph(escape_inline(inner)),)) if inner.strip() else None
    first = _LIST_MARKER.match(lines[0])
    if first is None:
        return None
    ordered = first.group("number") is not None
    items: list[str] = []
    for line in lines:
        marker = _LIST_MARKER.match(line)
        if marker is not None and (marker.group("number") is not None) == ordered:
            items.append(marker.group("text"))
        else:
            items[-1] += " " + line
    start = int(first.group("number")) if ordered else 1
    return ListBlock(
        ordered=ordered, items=tuple((Paragraph(escape_inline(item)),) for item in items), start=start
    )


# ---------------------------------------------------------------------------------------------------
# Headings


def heading_verdicts(blocks: list[tuple[str, ...]]) -> list[bool]:
    """Decide, for each block (its stripped lines), whether it is a section heading.

    A block is a heading when all of these hold:

    1. it is heading-shaped on its own (:func:`is_heading_shaped`): one short line, no
       sentence-final punctuation in any script, not a quotation, attribution or list item;
    2. it is not the last block: a heading introduces text, so a short closing line is prose;
    3. the block after it is body text: not itself heading-shaped, not starting in lowercase (that is
       the rest of a wrapped sentence), and longer than the heading unless it is a whole sentence
       ("It works."), and not an attribution ("— The Team"). Of two short lines in a row only the
       second, the one directly above the body, can be the heading;
    4. it is not part of an unmarked list: a run of ``LIST_RUN_LINES`` or more heading-shaped lines,
       or a run that follows a line ending with a colon ("You need:");
    5. a question ("How Long Does It Keep?") is a heading only with at least
       ``MIN_QUESTION_HEADING_WORDS`` words and a paragraph of ``QUESTION_BODY_WORDS`` words under it.
    """
    shaped = [is_heading_shaped(lines) for lines in blocks]
    verdicts: list[bool] = []
    for index, lines in enumerate(blocks):
        if not shaped[index] or index + 1 >= len(blocks):
            verdicts.append(False)
            continue
        following = blocks[index + 1]
        following_text = " ".join(following)
        text = " ".join(lines)
        following_is_prose = _structure(following[0]) == ""
        if shaped[index + 1] or (following_is_prose and _starts_lowercase(following_text)):
            verdicts.append(False)
            continue
        if following_is_prose and following_text[0] in ATTRIBUTION_DASHES:
            # A closing line signed by its author ("Best of luck" / "— The Team") is not a heading.
            verdicts.append(False)
            continue
        if (
            following_is_prose
            and _length(following_text) <= _length(text)
            and following_text.rstrip()[-1:] not in SENTENCE_END | QUESTION_MARKS
        ):
            verdicts.append(False)
            continue
        run_start = index
        while run_start > 0 and shaped[run_start - 1]:
            run_start -= 1
        run_length = index - run_start + 1
        after_colon = run_start > 0 and " ".join(blocks[run_start - 1]).rstrip()[-1:] in (":", "：")
        if run_length >= LIST_RUN_LINES or after_colon:
            verdicts.append(False)
            continue
        if text.rstrip()[-1] in QUESTION_MARKS and not (
            (len(text.split()) >= MIN_QUESTION_HEADING_WORDS or _is_cjk(text))
            and (_length(following_text) >= QUESTION_BODY_WORDS or not following_is_prose)
        ):
            verdicts.append(False)
            continue
        verdicts.append(True)
    return verdicts


def is_heading_shaped(lines: tuple[str, ...]) -> bool:
    """True when a block could be a heading on its own. All of these must hold:

    1. it is a single source line (a wrapped block is a paragraph);
    2. it is short: at most ``MAX_HEADING_WORDS`` words and ``MAX_HEADING_CHARS`` characters, or
       ``MAX_HEADING_CJK_CHARS`` characters in a script written without spaces;
    3. it does not end with sentence or clause punctuation of any script, nor a closing quotation
       mark; a question mark is allowed (questions make good headings; see :func:`heading_verdicts`);
    4. it does not open with a quotation mark („So“, «ainsi», "so") or a dash ("— Dr. Ruiz");
    5. it does not start with a list marker or a block quote marker;
    6. it does not start with a lowercase letter (a lowercase start is a sentence fragment);
    7. it has no sentence break inside ("It rose. Then it fell") other than after an abbreviation,
       and no colon or semicolon followed by a lowercase word ("Stress matters: a lot").
    """
    if len(lines) != 1:
        return False
    text = lines[0].strip()
    words = text.split()
    if not words:
        return False
    if _is_cjk(text):
        if len(text) > MAX_HEADING_CJK_CHARS:
            return False
    elif len(words) > MAX_HEADING_WORDS or len(text) > MAX_HEADING_CHARS:
        return False
    last = text[-1]
    if last in SENTENCE_END or last in CLOSING_QUOTES or last in ATTRIBUTION_DASHES:
        return False
    if text[0] in OPENING_QUOTES or text[0] in ATTRIBUTION_DASHES:
        return False
    if _structure(text):
        return False
    if _starts_lowercase(text):
        return False
    for sentence_break in _INNER_SENTENCE_BREAK.finditer(text):
        if sentence_break.end() == len(text):
            continue
        word = sentence_break.group("word")
        # A single capital is an initial ("J. Smith") or a numbered part ("I. Origins"); a number
        # followed by a full stop is a date or an ordinal ("3. März").
        if word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper()) or word.isdigit():
            continue
        return False
    clause = _INNER_CLAUSE_BREAK.search(text)
    return clause is None or not clause.group(0)[-1].islower()


def _starts_lowercase(text: str) -> bool:
    first_letter = next((char for char in text if char.isalpha()), "")
    return first_letter.islower()


def _is_cjk(text: str) -> bool:
    """Mostly written in a script without spaces between words (Han, Hiragana, Katakana, Hangul)."""
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return False
    wide = sum(1 for char in letters if unicodedata.east_asian_width(char) in ("W", "F"))
    return wide * 2 > len(letters)


def _length(text: str) -> int:
    """Words, or for CJK text characters divided by two (a rough word count for comparisons)."""
    return len(text) // 2 if _is_cjk(text) else len(text.split())
