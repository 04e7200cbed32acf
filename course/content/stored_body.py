"""A lesson body as stored in ``lessons.body`` (JSON) ↔ the blocks a renderer draws.

Two shapes exist. Lessons imported since articles became blocks store::

    {"version": 2,
     "blocks": [{"kind": "paragraph", "text": "…"}, {"kind": "heading", "level": 2, "text": "…"}, …],
     "references": [{"text": str, "guide": str | None, "title": str | None, "url": str | None}, …]}

with guide links already written into the blocks' inline Markdown, and without the heading the
lesson is titled by. Lessons stored before keep the older shape, ``{"blocks": [{"heading": str |
None, "paragraphs": [markdown, …]}], "references": [{"paragraph", "start", "end", …}]}``, and are
read into blocks by :func:`body_blocks` so they render the same way (their links applied by offset).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from course.content.blocks import Block, Heading, block_from_dict, block_to_dict, escape_inline
from course.content.guides import Guide, Reference, link_markdown
from course.content.markdown_reader import markdown_blocks

BODY_VERSION = 2


def is_block_body(body: Mapping[str, Any]) -> bool:
    return body.get("version") == BODY_VERSION


def body_json(blocks: Sequence[Block], references: Sequence[Reference]) -> dict[str, Any]:
    """The stored shape of a lesson: its shown, linked blocks and every guide reference found in it
    (matched or not, in reading order)."""
    return {
        "version": BODY_VERSION,
        "blocks": [block_to_dict(block) for block in blocks],
        "references": [
            {
                "text": reference.text,
                "guide": reference.guide.key if reference.guide else None,
                "title": reference.guide.title if reference.guide else None,
                "url": reference.guide.url if reference.guide else None,
            }
            for reference in references
        ],
    }


def body_blocks(body: Mapping[str, Any]) -> tuple[Block, ...]:
    """The blocks to render for a stored body of either shape (see the module docstring)."""
    if is_block_body(body):
        return tuple(block_from_dict(block) for block in body.get("blocks", []))
    references: dict[int, list[Reference]] = {}
    for ref in body.get("references", []):
        guide = Guide(key=ref["guide"], title=ref["title"], url=ref["url"], phrases=()) if ref.get("guide") else None
        references.setdefault(ref["paragraph"], []).append(
            Reference(text=ref["text"], start=ref["start"], end=ref["end"], guide=guide)
        )
    blocks: list[Block] = []
    index = 0
    for block in body.get("blocks", []):
        if block.get("heading"):
            blocks.append(Heading(escape_inline(block["heading"]), 2))
        for paragraph in block.get("paragraphs", []):
            blocks.extend(markdown_blocks(link_markdown(paragraph, references.get(index, []))))
            index += 1
    return tuple(blocks)


def further_reading(body: Mapping[str, Any]) -> list[dict[str, str]]:
    """The guides a lesson links to, each once, in order of first mention."""
    seen: dict[str, dict[str, str]] = {}
    for ref in body.get("references", []):
        if ref.get("guide") and ref["guide"] not in seen:
            seen[ref["guide"]] = {"title": ref["title"], "url": ref["url"]}
    return list(seen.values())
