"""The body of a lesson as stored in `lessons.body` (JSON): its blocks of paragraphs and the guide
references found in them. One typed shape, written by the importer and read by the renderer:

    {"blocks": [{"heading": str | None, "paragraphs": [str, ...]}, ...],
     "references": [{"paragraph": int, "text": str, "start": int, "end": int,
                     "guide": str | None, "title": str | None, "url": str | None}, ...]}

`paragraph` counts paragraphs across all blocks from 0; `start`/`end` are offsets of `text` in that
paragraph; `guide`, `title` and `url` are all set when a guide matched, all None when none did.
`to_json()` writes exactly this (the importer hashes it, so it must not drift); `from_json()` checks
it and says which part is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from course.content.guides import Guide, Reference


class LessonBodyError(ValueError):
    """A stored lesson body that does not have the shape above."""


@dataclass(frozen=True)
class Block:
    heading: str | None
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class StoredReference:
    """A phrase in a paragraph that refers to a guide, as stored with the lesson."""

    paragraph: int  # index over all paragraphs of the body
    text: str
    start: int
    end: int
    guide: str | None = None  # the guide's key; None when no guide matched
    title: str | None = None
    url: str | None = None

    @classmethod
    def of(cls, paragraph: int, reference: Reference) -> StoredReference:
        guide = reference.guide
        return cls(
            paragraph=paragraph,
            text=reference.text,
            start=reference.start,
            end=reference.end,
            guide=guide.key if guide else None,
            title=guide.title if guide else None,
            url=guide.url if guide else None,
        )

    def to_reference(self) -> Reference:
        guide = None
        if self.guide is not None:
            guide = Guide(key=self.guide, title=self.title or "", url=self.url or "", phrases=())
        return Reference(text=self.text, start=self.start, end=self.end, guide=guide)


@dataclass(frozen=True)
class LessonBody:
    blocks: tuple[Block, ...]
    references: tuple[StoredReference, ...] = ()

    def paragraphs(self) -> Iterator[tuple[int, str]]:
        """Every paragraph with its index over the whole body."""
        index = 0
        for block in self.blocks:
            for paragraph in block.paragraphs:
                yield index, paragraph
                index += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "blocks": [{"heading": block.heading, "paragraphs": list(block.paragraphs)} for block in self.blocks],
            "references": [
                {
                    "paragraph": ref.paragraph,
                    "text": ref.text,
                    "start": ref.start,
                    "end": ref.end,
                    "guide": ref.guide,
                    "title": ref.title,
                    "url": ref.url,
                }
                for ref in self.references
            ],
        }

    @classmethod
    def from_json(cls, data: object) -> LessonBody:
        """Read a stored body, refusing any other shape with a LessonBodyError naming the part."""
        if not isinstance(data, Mapping):
            raise LessonBodyError(f"lesson body must be a JSON object, not {type(data).__name__}")
        unknown = set(data) - {"blocks", "references"}
        if unknown:
            raise LessonBodyError(f"lesson body has unknown keys: {', '.join(sorted(map(str, unknown)))}")
        blocks = tuple(_block(i, raw) for i, raw in enumerate(_list(data, "blocks", "lesson body")))
        body = cls(blocks=blocks)
        paragraphs = dict(body.paragraphs())
        references = tuple(
            _reference(i, raw, paragraphs) for i, raw in enumerate(_list(data, "references", "lesson body", optional=True))
        )
        return cls(blocks=blocks, references=references)


def _list(data: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> list[Any]:
    if key not in data and optional:
        return []
    value = data.get(key)
    if not isinstance(value, list):
        raise LessonBodyError(f"{where}: {key!r} must be a list, not {type(value).__name__}")
    return value


def _block(index: int, raw: object) -> Block:
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
    return Block(heading=heading, paragraphs=tuple(paragraphs))


def _reference(index: int, raw: object, paragraphs: dict[int, str]) -> StoredReference:
    where = f"lesson body reference {index}"
    if not isinstance(raw, Mapping):
        raise LessonBodyError(f"{where} must be an object, not {type(raw).__name__}")
    fields: dict[str, Any] = {}
    for key, kind in (("paragraph", int), ("text", str), ("start", int), ("end", int)):
        value = raw.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise LessonBodyError(f"{where}: {key!r} must be {'an integer' if kind is int else 'text'}, not {value!r}")
        fields[key] = value
    for key in ("guide", "title", "url"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise LessonBodyError(f"{where}: {key!r} must be text or null, not {value!r}")
        fields[key] = value
    unknown = set(raw) - set(fields)
    if unknown:
        raise LessonBodyError(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    if fields["guide"] is not None and not (fields["title"] and fields["url"]):
        raise LessonBodyError(f"{where}: guide {fields['guide']!r} needs its 'title' and 'url'")
    paragraph = paragraphs.get(fields["paragraph"])
    if paragraph is None:
        raise LessonBodyError(f"{where}: paragraph {fields['paragraph']} does not exist (the body has {len(paragraphs)})")
    if paragraph[fields["start"] : fields["end"]] != fields["text"] or fields["start"] < 0:
        raise LessonBodyError(
            f"{where}: {fields['text']!r} is not at offsets {fields['start']}-{fields['end']} of paragraph {fields['paragraph']}"
        )
    return StoredReference(**fields)
