"""The body of a lesson as stored in `lessons.body` (JSON): the blocks a reader sees under the
lesson's title, with guide links written into their inline Markdown, and the guide references found
in them. One typed shape, written by the importer and read by the renderer:

    {"version": 2,
     "blocks": [{"kind": "paragraph", "text": str}, {"kind": "heading", "level": int, "text": str},
                {"kind": "list", "ordered": bool, "start": int, "items": [[block, ...], ...]},
                {"kind": "quote", "blocks": [block, ...]}, {"kind": "code", "language": str, "text": str},
                {"kind": "table", "header": [str], "align": [str], "rows": [[str]]},
                {"kind": "image", "src": str, "alt": str, "title": str}, {"kind": "rule"}],
     "references": [{"text": str, "guide": str | None, "title": str | None, "url": str | None}, ...]}

(see :mod:`course.content.blocks` for the blocks). `guide`, `title` and `url` are all set when a
guide matched, all None when none did; the heading a lesson is titled by is not among its blocks.

Lessons imported before bodies held blocks keep the first shape,

    {"blocks": [{"heading": str | None, "paragraphs": [markdown, ...]}, ...],
     "references": [{"paragraph": int, "text": str, "start": int, "end": int,
                     "guide": str | None, "title": str | None, "url": str | None}, ...]}

which :meth:`LessonBody.from_json` checks the same way and reads into blocks (its links applied by
offset), so a lesson stored then renders like one stored now. `to_json()` always writes the new
shape (the importer hashes it, so it must not drift); `from_json()` says which part is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from course.content.blocks import Block, Heading, block_from_dict, block_to_dict, escape_inline
from course.content.guides import Guide, Reference, link_markdown
from course.content.markdown_reader import markdown_blocks

BODY_VERSION = 2


class LessonBodyError(ValueError):
    """A stored lesson body that does not have the shape above."""


@dataclass(frozen=True)
class StoredReference:
    """A phrase of the lesson that refers to a guide, as stored with the lesson."""

    text: str
    guide: str | None = None  # the guide's key; None when no guide matched
    title: str | None = None
    url: str | None = None

    @classmethod
    def of(cls, reference: Reference) -> StoredReference:
        guide = reference.guide
        return cls(
            text=reference.text,
            guide=guide.key if guide else None,
            title=guide.title if guide else None,
            url=guide.url if guide else None,
        )


@dataclass(frozen=True)
class LessonBody:
    blocks: tuple[Block, ...]
    references: tuple[StoredReference, ...] = ()

    def further_reading(self) -> list[dict[str, str]]:
        """The guides the lesson refers to, each once, in order of first mention."""
        seen: dict[str, dict[str, str]] = {}
        for ref in self.references:
            if ref.guide and ref.guide not in seen:
                seen[ref.guide] = {"title": ref.title or "", "url": ref.url or ""}
        return list(seen.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": BODY_VERSION,
            "blocks": [block_to_dict(block) for block in self.blocks],
            "references": [
                {"text": ref.text, "guide": ref.guide, "title": ref.title, "url": ref.url} for ref in self.references
            ],
        }

    @classmethod
    def from_json(cls, data: object) -> LessonBody:
        """Read a stored body of either shape, refusing anything else with a LessonBodyError naming
        the part."""
        if not isinstance(data, Mapping):
            raise LessonBodyError(f"lesson body must be a JSON object, not {type(data).__name__}")
        if "version" not in data:
            return _from_first_shape(data)
        if data["version"] != BODY_VERSION:
            raise LessonBodyError(f"lesson body has unknown version {data['version']!r}; expected {BODY_VERSION}")
        unknown = set(data) - {"version", "blocks", "references"}
        if unknown:
            raise LessonBodyError(f"lesson body has unknown keys: {', '.join(sorted(map(str, unknown)))}")
        blocks = tuple(_stored_block(index, raw) for index, raw in enumerate(_list(data, "blocks", "lesson body")))
        references = tuple(
            _stored_reference(index, raw)
            for index, raw in enumerate(_list(data, "references", "lesson body", optional=True))
        )
        return cls(blocks=blocks, references=references)


def _list(data: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> list[Any]:
    if key not in data and optional:
        return []
    value = data.get(key)
    if not isinstance(value, list):
        raise LessonBodyError(f"{where}: {key!r} must be a list, not {type(value).__name__}")
    return value


def _stored_block(index: int, raw: object) -> Block:
    where = f"lesson body block {index}"
    if not isinstance(raw, Mapping):
        raise LessonBodyError(f"{where} must be an object, not {type(raw).__name__}")
    try:
        return block_from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise LessonBodyError(f"{where} ({raw.get('kind')!r}) is malformed: {exc}") from exc


def _stored_reference(index: int, raw: object) -> StoredReference:
    where = f"lesson body reference {index}"
    if not isinstance(raw, Mapping):
        raise LessonBodyError(f"{where} must be an object, not {type(raw).__name__}")
    text = raw.get("text")
    if not isinstance(text, str):
        raise LessonBodyError(f"{where}: 'text' must be text, not {text!r}")
    fields = _guide_fields(where, raw)
    unknown = set(raw) - {"text", "guide", "title", "url"}
    if unknown:
        raise LessonBodyError(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    return StoredReference(text=text, **fields)


def _guide_fields(where: str, raw: Mapping[str, Any]) -> dict[str, str | None]:
    fields: dict[str, str | None] = {}
    for key in ("guide", "title", "url"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise LessonBodyError(f"{where}: {key!r} must be text or null, not {value!r}")
        fields[key] = value
    if fields["guide"] is not None and not (fields["title"] and fields["url"]):
        raise LessonBodyError(f"{where}: guide {fields['guide']!r} needs its 'title' and 'url'")
    return fields


# ---------------------------------------------------------------------------------------------------
# The first shape: headings with paragraphs of Markdown, references by offset


def _from_first_shape(data: Mapping[str, Any]) -> LessonBody:
    """Check a body of the first shape and read it into blocks.

    1. Check every part (a wrong one raises LessonBodyError naming it).
    2. Apply each paragraph's matched references as links at their offsets, then read the paragraph
       as Markdown into blocks; a heading becomes a level-2 heading block.
    """
    unknown = set(data) - {"blocks", "references"}
    if unknown:
        raise LessonBodyError(f"lesson body has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    groups = [_first_shape_block(index, raw) for index, raw in enumerate(_list(data, "blocks", "lesson body"))]
    paragraphs = [paragraph for _, group in groups for paragraph in group]
    by_paragraph: dict[int, list[Reference]] = {}
    stored: list[StoredReference] = []
    for index, raw in enumerate(_list(data, "references", "lesson body", optional=True)):
        number, reference = _first_shape_reference(index, raw, paragraphs)
        by_paragraph.setdefault(number, []).append(reference)
        stored.append(StoredReference.of(reference))
    blocks: list[Block] = []
    number = 0
    for heading, group in groups:
        if heading:
            blocks.append(Heading(escape_inline(heading), 2))
        for paragraph in group:
            blocks.extend(markdown_blocks(link_markdown(paragraph, by_paragraph.get(number, []))))
            number += 1
    return LessonBody(blocks=tuple(blocks), references=tuple(stored))


def _first_shape_block(index: int, raw: object) -> tuple[str | None, tuple[str, ...]]:
    where = f"lesson body block {index}"
    if not isinstance(raw, Mapping):
        raise LessonBodyError(f"{where} must be an object, not {type(raw).__name__}")
    unknown = set(raw) - {"heading", "paragraphs"}
    if unknown:
        raise LessonBodyError(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    heading = raw.get("heading")
    if heading is not None and not isinstance(heading, str):
        raise LessonBodyError(f"{where}: 'heading' must be text or null, not {type(heading).__name__}")
    paragraphs = _list(raw, "paragraphs", where)
    for position, paragraph in enumerate(paragraphs):
        if not isinstance(paragraph, str):
            raise LessonBodyError(f"{where}: paragraph {position} must be text, not {type(paragraph).__name__}")
    return heading, tuple(paragraphs)


def _first_shape_reference(index: int, raw: object, paragraphs: list[str]) -> tuple[int, Reference]:
    where = f"lesson body reference {index}"
    if not isinstance(raw, Mapping):
        raise LessonBodyError(f"{where} must be an object, not {type(raw).__name__}")
    fields: dict[str, Any] = {}
    for key, kind in (("paragraph", int), ("text", str), ("start", int), ("end", int)):
        value = raw.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise LessonBodyError(f"{where}: {key!r} must be {'an integer' if kind is int else 'text'}, not {value!r}")
        fields[key] = value
    guide_fields = _guide_fields(where, raw)
    unknown = set(raw) - set(fields) - set(guide_fields)
    if unknown:
        raise LessonBodyError(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    number = fields["paragraph"]
    if not 0 <= number < len(paragraphs):
        raise LessonBodyError(f"{where}: paragraph {number} does not exist (the body has {len(paragraphs)})")
    if paragraphs[number][fields["start"] : fields["end"]] != fields["text"] or fields["start"] < 0:
        raise LessonBodyError(
            f"{where}: {fields['text']!r} is not at offsets {fields['start']}-{fields['end']} of paragraph {number}"
        )
    guide = None
    if guide_fields["guide"] is not None:
        guide = Guide(key=guide_fields["guide"], title=guide_fields["title"] or "", url=guide_fields["url"] or "", phrases=())
    return number, Reference(text=fields["text"], start=fields["start"], end=fields["end"], guide=guide)
