"""A campaign's test send, from the request to what its recipient can do with it: the content is
the one asked for (an edit saved before it goes out changes nothing), its preference and
unsubscribe links (List-Unsubscribe's one-click POST included) act on nobody and say so, and its
"View in a browser" link shows the test as it was sent."""

from __future__ import annotations

import re
from email.message import EmailMessage
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import select

from course.campaigns import service
from course.campaigns.service import tag_subscribers
from course.models import Campaign, CampaignStatus, Subscriber, SubscriberStatus
from tests.support.web_fixtures import WebStack
from tests.support.web_fixtures import *  # noqa: F403


def _campaign_and_reader(stack: WebStack) -> int:
    """Ann, an active subscriber tagged `readers`, and a draft for that tag; returns its id."""
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        session.add(Subscriber(email="ann@example.org", name="Ann", timezone="Europe/Berlin", status="active", created_at=now))
        session.flush()
        tag_subscribers(session, "ann@example.org", ["readers"])
        campaign = Campaign(
            name="March news", subject="What is rising", preheader="Rye and spelt", body_markdown="# Hello\n\nBread news.",
            sender_name="The Bakery", sender_email="newsletter@example.org", audience={"tags_any": ["readers"]},
            status=CampaignStatus.DRAFT, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(campaign)
        session.flush()
        return campaign.id


def _send_test(stack: WebStack, campaign_id: int) -> None:
    with stack.sessions.begin() as session:
        service.send_test(session, campaign_id, address="editor@example.net", preview_as="ann@example.org", now=stack.clock.now())


def _edit(stack: WebStack, campaign_id: int) -> None:
    """What saving the form does to the stored campaign, after the test was asked for."""
    with stack.sessions.begin() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.subject = "Edited subject"
        campaign.preheader = "Edited preheader"
        campaign.body_markdown = "# Hello\n\nEdited body."


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _links(message: EmailMessage) -> list[str]:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    return re.findall(r"https?://[^\s)>]+", text.get_content())


def test_a_test_send_shows_the_content_it_was_asked_for_not_a_later_edit(web_stack: WebStack) -> None:
    campaign_id = _campaign_and_reader(web_stack)
    _send_test(web_stack, campaign_id)
    _edit(web_stack, campaign_id)
    (message,) = web_stack.deliver()
    assert message["Subject"] == "[Test] What is rising"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    for part in (text, html):
        assert "Bread news." in part and "Rye and spelt" in html
        assert "Edited" not in part
    # A test asked for after the edit shows the edit.
    _send_test(web_stack, campaign_id)
    (later,) = web_stack.deliver()
    assert later["Subject"] == "[Test] Edited subject"
    assert "Edited body." in later.get_body(preferencelist=("plain",)).get_content()


def test_a_test_sends_links_act_on_nobody_say_so_and_its_view_link_shows_it(web_stack: WebStack, client: TestClient) -> None:
    campaign_id = _campaign_and_reader(web_stack)
    _send_test(web_stack, campaign_id)
    _edit(web_stack, campaign_id)
    (message,) = web_stack.deliver()
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "This is a test send" in text and "change nothing" in text

    # List-Unsubscribe: a web URL only (a mail to the unsubscribe address would act on whoever
    # sends it), whose RFC 8058 one-click POST answers as the real one does and unsubscribes nobody.
    targets = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    assert len(targets) == 1 and targets[0].startswith(("http://", "https://")), message["List-Unsubscribe"]
    one_click = client.post(_path(targets[0]), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert "test email" in one_click.text and "nobody was unsubscribed" in one_click.text

    # No link in the mail carries a reader's signed token; each account link says what it would do.
    links = _links(message)
    assert not [link for link in links if "/u/" in link or "/preferences/" in link], links
    for link in links:
        if "/test-mail/" in link:
            page = client.get(_path(link))
            assert page.status_code == 200 and "test email" in page.text and "chang" in page.text, link
    assert {urlsplit(link).path for link in links} >= {"/test-mail/unsubscribe", "/test-mail/preferences"}
    for link in links:
        if "/test-mail/unsubscribe" in link:
            client.post(_path(link))
    with web_stack.sessions() as session:
        assert session.scalar(select(Subscriber.status).where(Subscriber.email == "ann@example.org")) == SubscriberStatus.ACTIVE

    # "View in a browser" shows the test as it was sent: its content then, not the edit since.
    (view,) = [link for link in links if "/view/" in link]
    page = client.get(_path(view))
    assert page.status_code == 200, page.text
    assert "[Test] What is rising" in page.text and "Bread news." in page.text
    assert "Edited" not in page.text
