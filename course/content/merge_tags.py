"""Merge tags: the few per-reader values a newsletter's subject, preheader and body may name.

    Hi {{ first_name | default: "friend" }}, you are at lesson {{ lesson_number }} of {{ course_title }}.
    [Change when lessons arrive]({{ preferences_url }})

A tag is `{{ name }}`, optionally with a fallback for a reader who has no such value:
`{{ name | default: "text" }}`. The names are in TAGS. Pure functions only: `problems` says what is
wrong with a text (each message names its line), `substitute` swaps every tag for what a caller
puts in its place (the renderer puts a placeholder that is filled per recipient, see
course.delivery.render), and `value_of` is a tag's value for one reader.

A text with a mistake in a tag is refused when the draft is saved, so a tag typed wrong never
reaches a reader as `{{ frist_name }}`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# name -> what it becomes, for the editor's help and the docs.
TAGS: dict[str, str] = {
    "first_name": "the reader's first name (empty when they gave none: give a default)",
    "email": "the reader's email address",
    "course_title": "the title of the course the audience is made of",
    "lesson_number": "the number of the last lesson the reader was sent in that course",
    "preferences_url": "the reader's own preferences page",
    "unsubscribe_url": "the reader's own unsubscribe link",
}
# Known only when the audience is one course's readers.
COURSE_TAGS = frozenset({"course_title", "lesson_number"})
# Links: in a body only (a subject or preheader is not a place for a link), and never empty.
URL_TAGS = frozenset({"preferences_url", "unsubscribe_url"})
# What may be empty for some reader, and so may take a default.
MAY_BE_EMPTY = frozenset({"first_name", "lesson_number"})

_TAG = re.compile(r"\{\{([^{}\n]*)\}\}")
_INSIDE = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*default\s*:\s*(?:"([^"]*)"|'([^']*)')\s*)?""")
MAX_FALLBACK_CHARS = 100
EXAMPLE = '{{ first_name | default: "friend" }}'


@dataclass(frozen=True)
class MergeTag:
    name: str
    fallback: str | None = None


def _read(inside: str) -> MergeTag | None:
    match = _INSIDE.fullmatch(inside)
    if match is None:
        return None
    fallback = match.group(2) if match.group(2) is not None else match.group(3)
    return MergeTag(match.group(1), fallback)


def tags_in(text: str) -> list[MergeTag]:
    """The well-formed tags of `text`, in order (for a text already checked)."""
    return [tag for match in _TAG.finditer(text) if (tag := _read(match.group(1))) is not None]


def problems(text: str, *, field: str, course_known: bool, links_allowed: bool = True) -> list[str]:
    """Every mistake in the tags of `text`, one message each naming its line (`field` is what the
    editor calls the text: "subject", "body"). `course_known`: the audience is one course's readers,
    so course tags have a value. Empty: nothing wrong."""
    found: list[str] = []
    for number, line in enumerate(text.splitlines() or [""], start=1):
        where = f"{field.capitalize()}, line {number}" if "\n" in text else field.capitalize()
        for match in _TAG.finditer(line):
            written = match.group(0)
            tag = _read(match.group(1))
            if tag is None:
                found.append(f"{where}: {written} is not a merge tag (write {{{{ name }}}} or {EXAMPLE})")
            elif tag.name not in TAGS:
                found.append(f"{where}: {written} names no merge tag (known: {', '.join(TAGS)})")
            elif tag.name in URL_TAGS and not links_allowed:
                found.append(f"{where}: {written} is a link, which only the body can carry")
            elif tag.name in COURSE_TAGS and not course_known:
                found.append(f"{where}: {written} needs an audience of one course's readers (choose a course)")
            elif tag.fallback is not None and tag.name not in MAY_BE_EMPTY:
                found.append(f"{where}: {written} always has a value: drop its default")
            elif tag.fallback is not None and (len(tag.fallback) > MAX_FALLBACK_CHARS or "@@" in tag.fallback):
                found.append(f"{where}: the default of {written} must be plain text of at most {MAX_FALLBACK_CHARS} characters")
        if "{{" in _TAG.sub("", line):
            found.append(f"{where}: a {{{{ without its closing }}}} (merge tags are {{{{ name }}}})")
    return found


def substitute(text: str, replacement: Callable[[MergeTag], str]) -> str:
    """`text` with each well-formed tag replaced by `replacement(tag)`; anything else left as it is."""

    def swap(match: re.Match[str]) -> str:
        tag = _read(match.group(1))
        return match.group(0) if tag is None else replacement(tag)

    return _TAG.sub(swap, text)


def value_of(tag: MergeTag, values: Mapping[str, str]) -> str:
    """The tag's value for one reader: theirs, else its default, else nothing."""
    return values.get(tag.name) or tag.fallback or ""


def first_name_of(name: str) -> str:
    """The first word of a reader's name, as a greeting uses it ("" for no name)."""
    words = name.split()
    return words[0] if words else ""
