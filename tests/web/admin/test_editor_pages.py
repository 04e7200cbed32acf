"""The campaign editor through its pages, as an editor's browser uses them: bad input comes back
with a message per field and nothing stored; a draft is saved, counted, scheduled, paused, resumed
and cancelled; the progress JSON the page polls; a campaign edited while sending is refused."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.campaigns.service import fan_out, tag_subscribers
from course.models import AdminRole, Campaign, CampaignStatus, Delivery, DeliveryState, Subscriber
from tests.support.admin_fixtures import csrf_of, make_admin, sign_in
from tests.support.web_fixtures import WebStack
from tests.support.web_fixtures import *  # noqa: F403

SENDER = "newsletter@example.org"  # the default COURSE_CAMPAIGN_SENDERS entry


def _readers(stack: WebStack, count: int = 3) -> None:
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        for n in range(count):
            session.add(Subscriber(email=f"r{n}@example.org", name=f"R{n}", timezone="Europe/Berlin", status="active", created_at=now))
        session.flush()
        for n in range(count):
            tag_subscribers(session, f"r{n}@example.org", ["readers"])


def _form(client: TestClient, path: str, **changes: str) -> dict[str, str]:
    data = {
        "name": "March news", "subject": "What is rising", "preheader": "Rye and spelt", "sender": SENDER,
        "body_markdown": "# Hello\n\nBread news.", "tags_any": "readers", "tags_all": "", "course": "",
        "course_stage": "any", "min_lesson": "", "exclude_tags": "", "action": "save", "csrf_token": csrf_of(client, path),
    }  # fmt: skip
    data.update(changes)
    return data


def _campaigns(stack: WebStack) -> int:
    with stack.sessions() as session:
        return session.scalar(select(func.count()).select_from(Campaign)) or 0


def test_bad_input_comes_back_with_messages_and_stores_nothing(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack)
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "ed@example.org")
    cases = [
        ({"subject": ""}, "The subject is empty."),
        ({"subject": "Hi\r\nBcc: all@example.org"}, "must be one line"),
        ({"sender": "Spoof <ceo@example.org>"}, "Choose a sender"),
        ({"body_markdown": "<p onclick=\"steal()\">Hi</p>"}, "event handlers are not allowed"),
        ({"body_markdown": "<script>alert(1)</script>"}, "HTML that email cannot carry"),
        ({"tags_any": "nosuchtag"}, "No subscriber has the tag &#39;nosuchtag&#39;"),
        ({"body_markdown": "x" * 60_000}, "the most a campaign can have is 50,000"),
    ]
    for changes, message in cases:
        page = client.post("/admin/campaigns/new", data=_form(client, "/admin/campaigns/new", **changes))
        assert page.status_code == 422, (changes, page.status_code)
        assert "Nothing was saved" in page.text and message in page.text, (changes, message)
        assert 'aria-invalid="true"' in page.text
    huge = client.post("/admin/campaigns/new", data=_form(client, "/admin/campaigns/new", body_markdown="x" * (2 * 1024 * 1024)))
    assert huge.status_code == 413 and "larger than" in huge.text
    assert _campaigns(web_stack) == 0


def test_the_composer_lists_the_catalogues_guides_as_markdown_links(web_stack: WebStack, client: TestClient) -> None:
    """Without script the guides are Markdown to copy; the Insert buttons stay hidden until
    /static/admin.js shows them (browser test: test_admin_browser)."""
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "ed@example.org")
    page = client.get("/admin/campaigns/new").text
    assert '<code class="copyable">[Feeding a Sourdough Starter](https://example.com/guides/feeding-a-starter)</code>' in page
    assert 'hidden data-insert-target="body_markdown" data-insert-title="Feeding a Sourdough Starter"' in page
    assert "<script>" not in page and "onclick" not in page


def test_a_draft_is_deleted_once_and_a_campaign_with_test_sends_is_kept(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack, 3)
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "ed@example.org")
    drafts = []
    for _ in range(2):
        created = client.post("/admin/campaigns/new", data=_form(client, "/admin/campaigns/new"), follow_redirects=False)
        drafts.append(re.search(r"/admin/campaigns/(\d+)", created.headers["location"]).group(1))  # type: ignore[union-attr]
    first, second = (f"/admin/campaigns/{number}" for number in drafts)
    # A draft that never reached the ledger is deleted: the page offers that, not a cancel.
    page = client.get(first).text
    assert "Delete draft" in page and "Cancel campaign" not in page
    deleted = client.post(f"{first}/delete", data={"csrf_token": csrf_of(client, first)})
    assert deleted.status_code == 200 and "Draft deleted." in deleted.text and _campaigns(web_stack) == 1
    assert client.post(f"{first}/delete", data={"csrf_token": csrf_of(client, second)}).status_code == 404
    client.post(f"{second}/test", data={"test_address": "me@example.net", "preview_as": "", "csrf_token": csrf_of(client, second)})
    # With a test send in the ledger it is kept as their record: the page offers only the cancel.
    page = client.get(second).text
    assert "Delete draft" not in page and "Cancel campaign" in page
    kept = client.post(f"{second}/delete", data={"csrf_token": csrf_of(client, second)})
    assert kept.status_code == 409 and "delivery ledger" in kept.text and _campaigns(web_stack) == 1


def test_compose_count_schedule_pause_resume_cancel(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack, 3)
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "ed@example.org")
    counted = client.post("/admin/campaigns/new", data=_form(client, "/admin/campaigns/new", action="count"))
    assert counted.status_code == 200 and "<strong>3</strong> subscribers would get this campaign now" in counted.text
    with web_stack.sessions() as session:
        campaign_id = session.scalar(select(Campaign.id))
    assert campaign_id is not None and _campaigns(web_stack) == 1
    saved = client.post(f"/admin/campaigns/{campaign_id}/edit", data=_form(client, f"/admin/campaigns/{campaign_id}/edit", subject="What rose"), follow_redirects=False)
    assert saved.headers["location"] == f"/admin/campaigns/{campaign_id}/edit?notice=saved" and _campaigns(web_stack) == 1
    assert "Draft saved." in client.get(saved.headers["location"]).text

    detail = f"/admin/campaigns/{campaign_id}"
    past = client.post(f"{detail}/schedule", data={"mode": "at", "day": "2026-03-01", "at": "09:00", "zone": "Europe/Berlin", "csrf_token": csrf_of(client, detail)})
    assert past.status_code == 422 and "has passed" in past.text
    scheduled = client.post(
        f"{detail}/schedule",
        data={"mode": "local", "day": "2026-03-03", "at": "09:00", "zone": "UTC", "csrf_token": csrf_of(client, detail)},
        follow_redirects=False,
    )
    assert scheduled.headers["location"] == f"{detail}?scheduled=3&at_once=0"
    page = client.get(scheduled.headers["location"]).text
    assert "Scheduled for 3 recipients." in page and "3 Mar 2026, 09:00 in each subscriber's time zone" in page

    with web_stack.sessions.begin() as session:  # the beat's fan-out, when the earliest zone's time comes
        fan_out(session, campaign_id, now=web_stack.clock.now() + timedelta(days=1))
    refused = client.post(f"{detail}/edit", data=_form(client, f"{detail}/edit", subject="Changed while sending"))
    assert refused.status_code == 409 and "can no longer be edited" in refused.text
    assert client.get(f"{detail}/edit", follow_redirects=False).headers["location"] == detail

    progress = client.get(f"{detail}/progress.json").json()
    assert progress == {**progress, "status": "sending", "total": 3, "remaining": 3, "final": False}
    client.post(f"{detail}/pause", data={"csrf_token": csrf_of(client, detail)})
    with web_stack.sessions() as session:
        assert set(session.scalars(select(Delivery.state).where(Delivery.campaign_id == campaign_id))) == {DeliveryState.HELD}
    assert "Paused." in client.get(f"{detail}?notice=paused").text
    client.post(f"{detail}/resume", data={"csrf_token": csrf_of(client, detail)})
    with web_stack.sessions() as session:
        assert set(session.scalars(select(Delivery.state).where(Delivery.campaign_id == campaign_id))) == {DeliveryState.PENDING}
    client.post(f"{detail}/cancel", data={"csrf_token": csrf_of(client, detail)})
    assert client.get(f"{detail}/progress.json").json()["final"] is True
    again = client.post(f"{detail}/cancel", data={"csrf_token": csrf_of(client, detail)})
    assert again.status_code == 409 and "already cancelled" in again.text

    copy = client.post(f"{detail}/duplicate", data={"csrf_token": csrf_of(client, detail)}, follow_redirects=False)
    copy_id = int(re.search(r"/admin/campaigns/(\d+)/edit", copy.headers["location"]).group(1))  # type: ignore[union-attr]
    with web_stack.sessions() as session:
        duplicate = session.get(Campaign, copy_id)
        assert duplicate is not None and duplicate.status == CampaignStatus.DRAFT and duplicate.subject == "What rose"


def test_viewers_see_campaigns_without_the_editor_actions(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack, 1)
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
    sign_in(client, "ed@example.org")
    client.post("/admin/campaigns/new", data=_form(client, "/admin/campaigns/new"))
    client.post("/admin/logout", data={"csrf_token": csrf_of(client)})
    sign_in(client, "viewer@example.org")
    listing = client.get("/admin/campaigns").text
    assert "March news" in listing and "New campaign" not in listing
    detail = client.get("/admin/campaigns/1").text
    assert "Schedule" not in detail and "Cancel campaign" not in detail and "Duplicate" not in detail


def test_preview_shows_the_campaign_as_a_chosen_subscriber_gets_it(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack, 3)
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "ed@example.org")
    body = "## Rye\n\nA <b>bold</b> word, a [guide](https://example.com/guides/rye).\n\n<table><tr><td>kept</td></tr></table>"
    client.post("/admin/campaigns/new", data=_form(client, "/admin/campaigns/new", body_markdown=body, preheader="Spelt too"))
    with web_stack.sessions() as session:
        campaign_id = session.scalar(select(Campaign.id))
        r2 = session.scalar(select(Subscriber).where(Subscriber.email == "r2@example.org"))
        assert r2 is not None
    page = client.get(f"/admin/campaigns/{campaign_id}/preview?subscriber=R2@example.org").text
    assert "R2 &lt;r2@example.org&gt;" in page and "What is rising" in page and "Spelt too" in page
    assert "Hi R2," in page  # the text part greets them by name
    html = client.get(f"/admin/campaigns/{campaign_id}/preview.html?subscriber=r2@example.org")
    assert "frame-ancestors 'self'" in html.headers["content-security-policy"] and "script-src" not in html.headers["content-security-policy"]
    # The body is read into blocks as a lesson is: <b> is the bold it means, the raw table a table.
    assert re.search(r"<strong[^>]*>bold</strong>", html.text) and re.search(r"<t[hd][^>]*>kept</t[hd]>", html.text)
    assert "Spelt too" in html.text
    assert "A bold word, a guide (https://example.com/guides/rye)." in page  # the text part, as a lesson's
    assert 'rel="noopener noreferrer"' in html.text
    # No signed account link: a viewer could otherwise take r2's unsubscribe or preference link from
    # a preview. They lead to the pages that say what the link does and change nothing.
    from course.delivery.links import LinkPurpose, signer_from_settings

    signer = signer_from_settings(web_stack.settings)
    assert signer.url(LinkPurpose.UNSUBSCRIBE, r2.id, None) not in html.text + page
    assert signer.url(LinkPurpose.PREFERENCES, r2.id) not in html.text + page
    assert "/test-mail/unsubscribe" in html.text and "/test-mail/preferences" in html.text
    fallback = client.get(f"/admin/campaigns/{campaign_id}/preview?subscriber=nobody@example.org").text
    assert "No subscriber has the address nobody@example.org: shown as r0@example.org instead." in fallback


def test_a_test_send_goes_through_the_ledger_first_marked_and_uncounted(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack, 2)
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "ed@example.org")
    client.post("/admin/campaigns/new", data=_form(client, "/admin/campaigns/new"))
    with web_stack.sessions() as session:
        campaign_id = session.scalar(select(Campaign.id))
    preview = f"/admin/campaigns/{campaign_id}/preview"
    bad = client.post(f"/admin/campaigns/{campaign_id}/test", data={"test_address": "not-an-address", "preview_as": "r1@example.org", "csrf_token": csrf_of(client, preview)})
    assert bad.status_code == 422 and "Invalid email address" in bad.text
    sent = client.post(
        f"/admin/campaigns/{campaign_id}/test",
        data={"test_address": "Editor.Inbox@example.net", "preview_as": "r1@example.org", "csrf_token": csrf_of(client, preview)},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    assert "A test is on its way to Editor.Inbox@example.net" in client.get(sent.headers["location"]).text
    with web_stack.sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.test_campaign_id == campaign_id)).one()
        assert row.campaign_id is None and row.priority < 100 and row.kind == "campaign_test"
    (message,) = web_stack.deliver()
    assert message["Subject"] == "[Test] What is rising"
    assert message["To"].addresses[0].addr_spec == "Editor.Inbox@example.net"
    assert "Hi R1," in message.get_body(preferencelist=("plain",)).get_content()
    assert [mail.envelope_to for mail in web_stack.smtp.received] == [["Editor.Inbox@example.net"]]
    progress = client.get(f"/admin/campaigns/{campaign_id}/progress.json").json()
    assert progress["total"] == 0 and progress["sent"] == 0  # the test is in no count

    # A test address that does not exist fails the test row only: the subscriber shown is untouched.
    web_stack.smtp.reject_recipient("nobody@example.net", 550, "5.1.1 No such user")
    client.post(f"/admin/campaigns/{campaign_id}/test", data={"test_address": "nobody@example.net", "preview_as": "r0@example.org", "csrf_token": csrf_of(client, preview)})
    assert web_stack.deliver() == []
    with web_stack.sessions() as session:
        assert session.scalar(select(Subscriber.status).where(Subscriber.email == "r0@example.org")) == "active"
        assert session.scalar(select(Delivery.state).where(Delivery.test_address == "nobody@example.net")) == DeliveryState.FAILED


def test_schedule_and_cancel_each_ask_first_and_say_what_will_happen(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack, 3)
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "ed@example.org")
    client.post("/admin/campaigns/new", data=_form(client, "/admin/campaigns/new"))
    with web_stack.sessions() as session:
        campaign_id = session.scalar(select(Campaign.id))
    detail = f"/admin/campaigns/{campaign_id}"
    assert f'<form method="get" action="{detail}/schedule">' in client.get(detail).text
    past = client.get(f"{detail}/schedule", params={"mode": "at", "day": "2026-03-01", "at": "09:00", "zone": "UTC"})
    assert past.status_code == 422 and "has passed" in past.text  # refused before any confirmation

    asked = client.get(f"{detail}/schedule", params={"mode": "local", "day": "2026-03-03", "at": "10:30", "zone": "UTC"})
    assert asked.status_code == 200
    assert "Send to 3 readers at 10:30 in each reader&#39;s own time zone on Tue 3 Mar 2026, starting in 1 d 1 h 30 min." in asked.text
    with web_stack.sessions() as session:
        assert session.get(Campaign, campaign_id).status == CampaignStatus.DRAFT  # asking changed nothing
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', asked.text))
    assert {key: hidden[key] for key in ("mode", "day", "at", "zone")} == {"mode": "local", "day": "2026-03-03", "at": "10:30", "zone": "UTC"}
    done = client.post(f"{detail}/schedule", data=hidden, follow_redirects=False)
    assert done.headers["location"] == f"{detail}?scheduled=3&at_once=0"

    cancel_page = client.get(f"{detail}/cancel")
    assert cancel_page.status_code == 200 and "Nobody will get it: it was to go to 3 readers." in cancel_page.text
    with web_stack.sessions() as session:
        assert session.get(Campaign, campaign_id).status == CampaignStatus.SCHEDULED
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', cancel_page.text))
    cancelled = client.post(f"{detail}/cancel", data=hidden, follow_redirects=False)
    assert cancelled.headers["location"] == f"{detail}?notice=cancelled"
    with web_stack.sessions() as session:
        assert session.get(Campaign, campaign_id).status == CampaignStatus.CANCELLED
