"""Rendered lesson emails with a list, a table, code and a wide image, in Chromium at 600 and 375 px:
nothing overflows the card, the image is scaled to it, code wraps, and axe-core finds no serious or
critical accessibility problem. Screenshots land in COURSE_TEST_ARTEFACTS (or pytest's tmp folder)."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from course.content.article import parse_article
from course.content.definition import link_lesson
from course.content.guides import Guide, GuideCatalogue
from course.content.split import split_article
from course.content.lesson_body import LessonBody, StoredReference
from course.delivery.render import Renderer, greeting_for
from course.settings import PROJECT_ROOT
from tests.support.browser import chromium, serious_axe_violations

pytestmark = pytest.mark.browser

CATALOGUE = GuideCatalogue(
    (Guide("knives", "Sharpening Knives", "https://guides.example.com/sharpening", ("sharpening knives",)),)
)

ARTICLES = {
    "en": """# Knife Skills

## A Safe Grip

A sharp knife is safer than a blunt one, because it goes where you aim it. Before you start, read
our guide on sharpening knives, and keep a damp cloth under the board so it cannot slide.

![A chef's knife on a wooden board, seen from above](IMAGE "A 1024-pixel photo, scaled to the card")

1. Pinch the blade where it meets the handle.
2. Curl the fingers of the guiding hand.
   - knuckles forward
   - fingertips tucked
3. Rock the knife from tip to heel.

> Slow is smooth, and smooth is fast.

| Cut | Size | Use |
|:----|-----:|:---:|
| Brunoise | 2 mm | sauces and dressings |
| Julienne | 3 mm × 5 cm | salads, stir-fries |
| Chiffonade | ribbons | herbs |

```python
def dice(onion, size_mm=3):
    return [cube for cube in onion.cut(size_mm)]  # a long line of code that wraps inside the card instead of overflowing it
```

That is all for today: practise on an onion or two.
""",
    "de": """# Messerkunde

## Der sichere Griff

Ein scharfes Messer ist sicherer als ein stumpfes, weil es dorthin schneidet, wo man es hinführt.

![Ein Kochmesser auf einem Holzbrett](IMAGE)

1. Die Klinge am Übergang zum Griff fassen.
2. Die Finger der Führhand einrollen.

| Schnitt | Größe |
|:--------|------:|
| Brunoise | 2 mm |
| Julienne | 3 mm × 5 cm |

```text
Winkel: 15–20 Grad, gleichmäßig über die ganze Klinge ziehen, ohne Druck auf die Spitze auszuüben
```
""",
}


def wide_png(path: Path, width: int = 1024, height: int = 384) -> None:
    """A 1024 × 384 gradient PNG, written without an imaging library."""
    rows = b"".join(
        b"\x00" + bytes(value for x in range(width) for value in (40 + x * 180 // width, 110 + y * 90 // height, 90))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def rendered_lesson(language: str, image: Path) -> str:
    # A data: URL, as Markdown refuses file: links; the browser gets the real 1024-pixel PNG.
    data_url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode("ascii")
    article = parse_article(ARTICLES[language].replace("IMAGE", data_url), source=f"knives-{language}.md")
    [plan] = split_article(article, 400, language=language)
    blocks, found = link_lesson(plan, CATALOGUE)
    lesson = SimpleNamespace(position=3, lesson_count=8, title=plan.title, reading_minutes=plan.reading_minutes, body=LessonBody(blocks, tuple(map(StoredReference.of, found))).to_json())
    template = Renderer(PROJECT_ROOT / "templates").lesson_template(
        course=SimpleNamespace(title="Kitchen Basics", language=language), lesson=lesson
    )
    return template.fill(
        # The greeting the composer writes, in the course's language (not a fixed English one).
        {"greeting": greeting_for("Ann", language), "view_url": "https://x.example/v", "preferences_url": "https://x.example/p", "unsubscribe_url": "https://x.example/u"}
    ).html


@pytest.mark.parametrize("language", ["en", "de"])
def test_rendered_lesson_fits_the_card_at_600_and_375_px(tmp_path: Path, artefacts: Path, language: str) -> None:
    image = tmp_path / "knife.png"
    wide_png(image)
    page_file = tmp_path / f"lesson-{language}.html"
    page_file.write_text(rendered_lesson(language, image), encoding="utf-8")
    with chromium() as browser:
        for width in (600, 375):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=artefacts / f"lesson-{language}-{width}.png", full_page=True)
            # Nothing wider than the window: no sideways scrolling of the whole email.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            card = page.evaluate("document.querySelector('.card').getBoundingClientRect().width")
            image_box = page.evaluate("(() => { const r = document.querySelector('img.image').getBoundingClientRect(); return [r.width, r.height]; })()")
            assert 0 < image_box[0] <= card and image_box[1] > 0  # scaled to the card, loaded
            assert page.evaluate("document.querySelector('img.image').naturalWidth") == 1024
            code_box = page.evaluate("(() => { const e = document.querySelector('pre.code'); return [e.scrollWidth, e.clientWidth]; })()")
            assert code_box[0] <= code_box[1]  # code wraps instead of overflowing
            assert page.locator("ol.list > li").count() >= 2 and page.locator("table.table th").count() >= 2
            serious = serious_axe_violations(page, f"lesson-{language}@{width}")
            assert not serious, serious
            page.close()
