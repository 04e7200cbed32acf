"""The lesson body's stored shape: what the importer writes reads back the same, and a body of any
other shape is refused with an error naming the part that is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from course.content.guides import Guide, Reference
from course.content.lesson_body import Block, LessonBody, LessonBodyError, StoredReference

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


def test_the_stored_shape_reads_back_unchanged() -> None:
    body = LessonBody.from_json(stored())
    assert body.blocks == (Block(None, (PARAGRAPHS[0],)), Block("Baking", (PARAGRAPHS[1],)))
    assert list(body.paragraphs()) == list(enumerate(PARAGRAPHS))
    assert body.to_json() == stored()
    # Through real JSON too, and with the same bytes under the importer's hash (sort_keys).
    assert json.dumps(LessonBody.from_json(json.loads(json.dumps(stored()))).to_json(), sort_keys=True) == json.dumps(
        stored(), sort_keys=True
    )
    assert LessonBody.from_json({"blocks": []}) == LessonBody(blocks=())


def test_references_convert_both_ways() -> None:
    start = PARAGRAPHS[0].index("our guide")
    found = Reference(text="our guide on feeding a starter", start=start, end=start + 30, guide=GUIDE)
    kept = StoredReference.of(0, found)
    assert (kept.guide, kept.title, kept.url) == ("starter", "Feeding a starter", "https://example.org/starter")
    back = kept.to_reference()
    assert (back.text, back.start, back.end) == (found.text, found.start, found.end)
    assert back.guide is not None and (back.guide.key, back.guide.url) == ("starter", GUIDE.url)
    unmatched = StoredReference.of(1, Reference(text="bake", start=5, end=9, guide=None))
    assert unmatched.to_reference().guide is None and unmatched.guide is None


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
