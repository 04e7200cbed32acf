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
# Articles written after the rules were tuned, and never tuned on. Their first run measured
# precision 1.000 and recall 0.929 (26 found, 0 wrong, 2 missed, both English: a numbered heading
# "3. Start with the decision" read as a list item, and a question heading right after an unmarked
# list in an article without blank lines, read as the list's last line). Neither is fixed: both
# readings are defensible for plain text, and a rule for them would be tuned on this set.
HELD_OUT = Path(__file__).parent / "data" / "headings_heldout"
MIN_HELD_OUT_PRECISION = 0.95
MIN_HELD_OUT_RECALL = 0.90


def labelled_articles(directory: Path = LABELLED) -> list[tuple[str, str, set[str]]]:
    """(name, text without markers, heading lines) for every labelled article of ``directory``."""
    articles = []
    for path in sorted(directory.glob("*.txt")):
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


def measure(articles: list[tuple[str, str, set[str]]], label: str) -> tuple[float, float, str]:
    """Overall precision, recall and a report (per language, then each mistake) on ``articles``."""
    totals: dict[str, list[int]] = {}  # language -> [true positives, false positives, false negatives]
    mistakes: list[str] = []
    for name, text, expected in articles:
        found = detected_headings(name, text)
        language = name.split("-")[0]
        counts = totals.setdefault(language, [0, 0, 0])
        counts[0] += len(found & expected)
        counts[1] += len(found - expected)
        counts[2] += len(expected - found)
        mistakes += [f"  {name}: not a heading but taken for one: {line!r}" for line in sorted(found - expected)]
        mistakes += [f"  {name}: heading missed: {line!r}" for line in sorted(expected - found)]
    overall = [sum(counts[i] for counts in totals.values()) for i in range(3)]
    lines = [f"heading detection on the {label}:"]
    for language, (tp, fp, fn) in sorted(totals.items()) + [("all", tuple(overall))]:  # type: ignore[list-item]
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        lines.append(f"  {language:>3}: precision {precision:.3f}  recall {recall:.3f}  ({tp} found, {fp} wrong, {fn} missed)")
    tp, fp, fn = overall
    return tp / (tp + fp), tp / (tp + fn), "\n".join(lines + mistakes)


def test_heading_detection_precision_and_recall(capsys: pytest.CaptureFixture[str]) -> None:
    precision, recall, report = measure(labelled_articles(), "labelled set")
    with capsys.disabled():
        print("\n" + report)
    assert precision >= MIN_PRECISION, report
    assert recall >= MIN_RECALL, report


def test_heading_detection_out_of_sample(capsys: pytest.CaptureFixture[str]) -> None:
    """The held-out articles (never tuned on): the figures of their first run are in docs/content.md,
    and the floors sit a little under them."""
    articles = labelled_articles(HELD_OUT)
    assert len(articles) >= 5 and {name.split("-")[0] for name, _, _ in articles} == {"en", "de", "fr"}
    precision, recall, report = measure(articles, "HELD-OUT set")
    with capsys.disabled():
        print("\n" + report)
    assert precision >= MIN_HELD_OUT_PRECISION, report
    assert recall >= MIN_HELD_OUT_RECALL, report
