"""Plain-text heading detection measured on a labelled set: precision and recall, printed and floored.

``data/headings/`` holds plain-text articles written for this test in English, German and French.
A line starting with ``@@H `` is a heading; the marker is removed before the article is parsed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from course.content.article import parse_article
from course.content.blocks import inline_plain

LABELLED = Path(__file__).parent / "data" / "headings"
MARKER = "@@H "
# Floors a little under the figures measured when the rules were written (see the printed report),
# so a change that makes detection worse fails here.
MIN_PRECISION = 0.95
MIN_RECALL = 0.90


def labelled_articles() -> list[tuple[str, str, set[str]]]:
    """(name, text without markers, heading lines) for every labelled article."""
    articles = []
    for path in sorted(LABELLED.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").split("\n")
        headings = {line.removeprefix(MARKER).strip() for line in lines if line.startswith(MARKER)}
        text = "\n".join(line.removeprefix(MARKER) for line in lines)
        articles.append((path.name, text, headings))
    return articles


def detected_headings(name: str, text: str) -> set[str]:
    article = parse_article(text, source=name)
    return {inline_plain(heading.text) for heading in article.headings}


def test_labelled_set_is_large_enough_and_in_three_languages() -> None:
    articles = labelled_articles()
    assert len(articles) >= 15
    assert {name.split("-")[0] for name, _, _ in articles} == {"en", "de", "fr"}
    assert sum(len(headings) for _, _, headings in articles) >= 55


def test_heading_detection_precision_and_recall(capsys: pytest.CaptureFixture[str]) -> None:
    totals: dict[str, list[int]] = {}  # language -> [true positives, false positives, false negatives]
    mistakes: list[str] = []
    for name, text, expected in labelled_articles():
        found = detected_headings(name, text)
        language = name.split("-")[0]
        counts = totals.setdefault(language, [0, 0, 0])
        counts[0] += len(found & expected)
        counts[1] += len(found - expected)
        counts[2] += len(expected - found)
        mistakes += [f"  {name}: not a heading but taken for one: {line!r}" for line in sorted(found - expected)]
        mistakes += [f"  {name}: heading missed: {line!r}" for line in sorted(expected - found)]
    overall = [sum(counts[i] for counts in totals.values()) for i in range(3)]
    lines = ["heading detection on the labelled set:"]
    for language, (tp, fp, fn) in sorted(totals.items()) + [("all", tuple(overall))]:  # type: ignore[list-item]
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        lines.append(f"  {language:>3}: precision {precision:.3f}  recall {recall:.3f}  ({tp} found, {fp} wrong, {fn} missed)")
    with capsys.disabled():
        print("\n" + "\n".join(lines + mistakes))
    tp, fp, fn = overall
    assert tp / (tp + fp) >= MIN_PRECISION, "\n".join(mistakes)
    assert tp / (tp + fn) >= MIN_RECALL, "\n".join(mistakes)
