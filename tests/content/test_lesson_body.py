"""The lesson body's stored shape: what the importer writes reads back the same, and a body of any
other shape is refused with an error naming the part that is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from course.content.blocks import Heading, ListBlock, Paragraph, Table
from course.content.guides import Guide, Reference
from course.content.lesson_body import LessonBody, LessonBodyError, StoredReference

GUIDE = Guide(key="starter", title="Feeding a starter", url="https://example.org/starter", phrases=("feeding a starter",))
PARAGRAPHS = ("First, see our guide on feeding a starter.", "Then bake.")


def stored() -> dict[str, Any]:
    start = PARAGRAPHS[0].index("our guide")
    text = "our guide on feeding a starter"
    return {
        "blocks": [
            {"heading": None, "paragraphs": [PARAGRAPHS[0]]},
            {"heading": "Baking", "paragraphs": [PARAGRAPHS[1]]},
        ],
        "references": [
            {"paragraph": 0, "text": text, "start": start, "end": start + len(text), "guide": "starter",
             "title": "Feeding a starter", "url": "https://example.org/starter"},
            {"paragraph": 1, "text": "bake", "start": 5, "end": 9, "guide": None, "title": None, "url": None},
        ],
    }  # fmt: skip


def test_the_first_stored_shape_reads_into_blocks_with_its_links() -> None:
    body = LessonBody.from_json(stored())
    assert body.blocks == (
        Paragraph("First, see [our guide on feeding a starter](https://example.org/starter)."),
        Heading("Baking", 2),
        Paragraph("Then bake."),
    )
    assert body.references == (
        StoredReference("our guide on feeding a starter", "starter", "Feeding a starter", "https://example.org/starter"),
        StoredReference("bake"),
    )
    assert body.further_reading() == [{"title": "Feeding a starter", "url": "https://example.org/starter"}]
    assert LessonBody.from_json({"blocks": []}) == LessonBody(blocks=())
    # Lists and other Markdown kept in a first-shape paragraph become their blocks.
    listed = LessonBody.from_json({"blocks": [{"heading": None, "paragraphs": ["- flour\n- water"]}]})
    assert listed.blocks == (ListBlock(False, ((Paragraph("flour"),), (Paragraph("water"),))),)


def test_the_block_shape_reads_back_unchanged() -> None:
    body = LessonBody(
        blocks=(Heading("Baking", 3), Paragraph("See [the guide](https://example.org/g)."), Table(("a",), (("1",),), ("",))),
        references=(StoredReference("the guide", "g", "The Guide", "https://example.org/g"), StoredReference("x")),
    )
    stored_json = body.to_json()
    assert stored_json["version"] == 2
    assert LessonBody.from_json(json.loads(json.dumps(stored_json))) == body
    assert json.dumps(LessonBody.from_json(stored_json).to_json(), sort_keys=True) == json.dumps(stored_json, sort_keys=True)


def test_references_are_stored_from_what_the_plan_found() -> None:
    start = PARAGRAPHS[0].index("our guide")
    found = Reference(text="our guide on feeding a starter", start=start, end=start + 30, guide=GUIDE)
    kept = StoredReference.of(found)
    assert (kept.text, kept.guide, kept.title, kept.url) == (found.text, "starter", "Feeding a starter", GUIDE.url)
    unmatched = StoredReference.of(Reference(text="bake", start=5, end=9, guide=None))
    assert unmatched == StoredReference("bake")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": 3, "blocks": []}, "unknown version 3"),
        ({"version": 2, "blocks": [], "extra": 1}, "unknown keys: extra"),
        ({"version": 2, "blocks": [{"kind": "video"}]}, "block 0 \\('video'\\) is malformed: unknown block kind"),
        ({"version": 2, "blocks": [{"kind": "paragraph"}]}, "block 0 \\('paragraph'\\) is malformed"),
        ({"version": 2, "blocks": ["text"]}, "block 0 must be an object"),
        ({"version": 2, "blocks": [], "references": [{"text": 1}]}, "reference 0: 'text' must be text"),
        ({"version": 2, "blocks": [], "references": [{"text": "x", "guide": "g"}]}, "guide 'g' needs its 'title' and 'url'"),
        ({"version": 2, "blocks": [], "references": [{"text": "x", "page": 1}]}, "reference 0 has unknown keys: page"),
    ],
)
def test_a_block_body_of_another_shape_is_refused_by_name(data: Any, message: str) -> None:
    with pytest.raises(LessonBodyError, match=message):
        LessonBody.from_json(data)


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = stored()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object, not list"),
        ({"references": []}, "'blocks' must be a list, not NoneType"),
        ({"blocks": [], "extra": 1}, "unknown keys: extra"),
        (_with(("blocks", 0), "text"), "block 0 must be an object"),
        (_with(("blocks", 1, "heading"), 3), "block 1: 'heading' must be text or null"),
        (_with(("blocks", 1, "paragraphs"), "Then bake."), "block 1: 'paragraphs' must be a list"),
        (_with(("blocks", 1, "paragraphs", 0), None), "block 1: paragraph 0 must be text"),
        (_with(("references", 0, "start"), "7"), "reference 0: 'start' must be an integer"),
        (_with(("references", 1, "paragraph"), True), "reference 1: 'paragraph' must be an integer"),
        (_with(("references", 1, "paragraph"), 5), "reference 1: paragraph 5 does not exist"),
        (_with(("references", 1, "start"), 4), "reference 1: 'bake' is not at offsets 4-9 of paragraph 1"),
        (_with(("references", 0, "url"), None), "reference 0: guide 'starter' needs its 'title' and 'url'"),
        (_with(("references", 0, "colour"), "red"), "reference 0 has unknown keys: colour"),
    ],
)
def test_a_body_of_another_shape_is_refused_by_name(data: Any, message: str) -> None:
    with pytest.raises(LessonBodyError, match=message):
        LessonBody.from_json(data)
