"""An HTML article in a German course, from the content folder to the inbox over real SMTP: the
lesson arrives with its German frame, both parts carry every block (checked block by block), the
title is not repeated under itself, and the guide reference is a link in both parts."""

from __future__ import annotations

import re
from datetime import timedelta
import shutil
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from course.audience.course_content import import_content
from course.audience.enrollment import enroll, get_or_create_subscriber
from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.delivery.links import signer_from_settings
from course.delivery.render import Renderer
from course.delivery.sending import Sender
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from course.models import Course
from course.settings import Settings
from tests.support.smtp_server import RecordingSMTPServer

ARTICLE = """<!DOCTYPE html>
<html lang="de"><head><meta charset="utf-8"><title>Messer schärfen | Küchenblog</title>
<link rel="canonical" href="https://kueche.example.de/messer/"></head>
<body><header><nav><a href="/">Start</a> <a href="/rezepte">Rezepte</a></nav></header>
<main><article>
<h1>Messer richtig schärfen</h1>
<p>Ein scharfes Messer ist sicherer als ein stumpfes, weil es dorthin schneidet, wo man es hinführt. Mehr dazu steht in unserem Ratgeber, und die Grundlagen erklärt der Schleifstein-Artikel; lesen Sie vorher <a href="https://guides.example.de/steine">unseren Ratgeber zu Schleifsteinen</a>.</p>
<h2>Was Sie brauchen</h2>
<ol><li>Einen Schleifstein mit Körnung 1000 und 6000.</li><li>Eine Schüssel Wasser.</li><li>Ein Tuch als Unterlage.</li></ol>
<table><thead><tr><th>Körnung</th><th>Zweck</th></tr></thead><tbody><tr><td>1000</td><td>Schärfen</td></tr><tr><td>6000</td><td>Polieren</td></tr></tbody></table>
<pre><code class="language-text">Winkel: 15 Grad
Züge:   zehn pro Seite</code></pre>
<blockquote><p>Druck ist der Feind der Schneide.</p></blockquote>
<p>Zum Schluss das Messer abspülen und abtrocknen. See the sharpening guide for the full routine.</p>
</article></main><footer>© Küchenblog</footer></body></html>
"""

GUIDES = """[[guide]]
key = "sharpening"
title = "The Sharpening Routine"
url = "https://guides.example.de/routine"
phrases = ["sharpening routine", "sharpening"]
"""


@pytest.fixture
def content(tmp_path: Path) -> Path:
    folder = tmp_path / "content"
    (folder / "articles").mkdir(parents=True)
    (folder / "courses").mkdir()
    (folder / "articles" / "messer.html").write_text(ARTICLE, encoding="utf-8")
    (folder / "guides.toml").write_text(GUIDES, encoding="utf-8")
    (folder / "courses" / "messer.toml").write_text(
        'title = "Messerkunde"\narticles = ["articles/messer.html"]\nsender_name = "Küchenblog"\n'
        'sender_email = "kurs@example.de"\nlanguage = "de"\ntarget_words = 400\n',
        encoding="utf-8",
    )
    return folder


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content().replace("\r\n", "\n"), html.get_content()


def test_a_german_html_article_reaches_the_inbox_with_every_block(
    content: Path, sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer
) -> None:
    with sessions.begin() as session:
        [result] = import_content(session, content, now=clock.now())
        assert result.created and result.lessons_added == 1
        course = session.scalars(select(Course)).one()
        assert course.language == "de"
        reader = get_or_create_subscriber(session, "ann@example.org", name="Ann Weber", timezone_name="Europe/Berlin", now=clock.now())
        enroll(session, reader, course, now=clock.now())
    tasks: list[tuple[list[int], str, bool]] = []
    clock.advance(timedelta(days=1))
    dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token, urgent)))
    transport = SMTPTransport(SMTPConfig(settings.smtp_host, settings.smtp_port, timeout=5))
    sender = Sender(settings, sessions=sessions, transport=transport, renderer=Renderer(settings.templates_dir),
                    signer=signer_from_settings(settings), clock=clock)  # fmt: skip
    try:
        for ids, token, _ in tasks:
            sender.send_claimed(ids, token)
    finally:
        transport.close()
    [mail] = smtp_server.received
    message = mail.message
    assert message["subject"] == "Lektion 1 von 1: Messer richtig schärfen"
    text, html = parts(message)
    (content.parent / "lesson-de.txt").write_text(text, encoding="utf-8")  # for a person to read

    # The German frame.
    assert "Hallo Ann," in text and "Hallo Ann," in html
    assert "Im Browser ansehen" in text and "Abmelden" in text and "Lektion 1 von 1" in text
    assert '<html lang="de"' in html

    # The plain-text part, block by block.
    body = text.split("Hallo Ann,", 1)[1]
    assert "Was Sie brauchen\n================" in body
    assert "1. Einen Schleifstein mit Körnung 1000 und 6000.\n2. Eine Schüssel Wasser.\n3. Ein Tuch als Unterlage." in body
    assert "Körnung  Zweck\n-------  --------\n1000     Schärfen\n6000     Polieren" in body
    assert "Winkel: 15 Grad\nZüge:   zehn pro Seite" in body  # code verbatim
    assert "> Druck ist der Feind der Schneide." in body
    # The existing link is kept once, the matched reference becomes "text (url)".
    assert body.count("https://guides.example.de/steine") == 1
    assert "the sharpening guide (https://guides.example.de/routine)" in " ".join(body.split())
    assert all(len(line) <= 78 or re.search(r"https?://\S+", line) for line in body.split("\n"))
    # The title is the subject's and the page's, never a heading under itself; the site is gone.
    assert body.count("Messer richtig schärfen") == 0
    assert "Rezepte" not in body and "Küchenblog" not in body.split("--")[0]

    # The HTML part, block by block.
    assert html.count("Messer richtig sch") == 2  # <title> and <h1>
    assert re.search(r"<h2[^>]*>Was Sie brauchen</h2>", html)
    assert len(re.findall(r"<li[^>]*>", html)) >= 3 and re.search(r'<ol class="list"', html)
    assert re.search(r"<th[^>]*>K(ö|&#246;)rnung</th>", html) and re.search(r"<td[^>]*>Polieren</td>", html)
    assert re.search(r'<pre class="code" data-language="text"', html)
    assert re.search(r'<blockquote class="quote"', html)
    assert html.count('href="https://guides.example.de/steine"') == 1
    assert re.search(r'<a href="https://guides.example.de/routine"[^>]*>the sharpening guide</a>', html)
    assert "Weiterlesen" in html  # further reading, in German
