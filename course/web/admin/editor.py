"""The campaign editor pages (editors and owners): compose a draft (every submit saves it), count
its audience, duplicate, schedule, pause, resume and cancel; and the JSON the detail page polls for
live progress. Each handler checks the form's CSRF field, calls course.campaigns.service in one
transaction, and answers with a page or a redirect to the campaign (with a notice)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from markupsafe import escape

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from course.campaigns import service
from course.campaigns.refusals import CampaignRefused, DraftExists, InputRefused
from course.campaigns.audience import AudienceError, build_audience, tag_counts
from course.campaigns.progress import campaign_summary
from course.campaigns.timing import parse_schedule
from course.content.catalogue import list_courses
from course.content import merge_tags
from course.content.guides import GuideCatalogueError, load_guides
from course.delivery.compose import Composer
from course.delivery.preview import Preview, campaign_preview, draft_preview_of
from course.models import AdminRole, Campaign, CampaignStatus
from course.web.admin.auth import Actor, AdminPageError, EditorPage, SiteDep, ViewerPage, check_csrf
from course.web.admin.campaigns import NOTICES, detail_page
from course.web.admin.refusals import is_input, refusal_page, status_of
from course.web.admin.views import admin_page, see_other
from course.web.site import Site

router = APIRouter(include_in_schema=False)
TextField = Annotated[str, Form()]

def _form_of(campaign: Campaign | None) -> dict[str, Any]:
    if campaign is None:
        return {
            "name": "", "subject": "", "preheader": "", "sender": "", "provider": "", "body_markdown": "",
            "tags_any": "", "tags_all": "", "course": "", "course_stage": "any", "min_lesson": "", "exclude_tags": "",
        }  # fmt: skip
    audience = service.audience_of(campaign)
    return {
        "name": campaign.name, "subject": campaign.subject, "preheader": campaign.preheader,
        "sender": campaign.sender_email, "provider": campaign.provider or "", "body_markdown": campaign.body_markdown,
        "tags_any": " ".join(audience.tags_any), "tags_all": " ".join(audience.tags_all), "course": audience.course or "",
        "course_stage": audience.course_stage.value, "min_lesson": audience.min_lesson or "",
        "exclude_tags": " ".join(audience.exclude_tags),
    }  # fmt: skip


def _guides(site: Site) -> list[Any]:
    try:
        return list(load_guides(site.settings.content_dir / "guides.toml").guides)
    except (GuideCatalogueError, OSError):
        return []


def _compose_page(
    site: Site, request: Request, actor: Actor, *, campaign_id: int | None, form: dict[str, Any],
    errors: dict[str, str] | None = None, status: int = 200, notice: str = "", audience_count: int | None = None,
) -> HTMLResponse:  # fmt: skip
    with site.sessions.begin() as session:
        return admin_page(
            site, request, "compose.html", actor=actor, status=status, campaign_id=campaign_id, form=form,
            errors=errors or {}, notice=notice, audience_count=audience_count,
            senders=service.parse_senders(site.settings.campaign_senders), tags=tag_counts(session),
            providers=list(site.settings.provider_settings),
            courses=[listing.course for listing in list_courses(session)], guides=_guides(site),
            max_body=service.MAX_BODY_CHARS, merge_tags=merge_tags.TAGS, merge_course_tags=merge_tags.COURSE_TAGS,
            merge_link_tags=merge_tags.URL_TAGS, merge_example=merge_tags.EXAMPLE,
        )  # fmt: skip


def _draft_from(site: Site, fields: dict[str, Any]) -> service.Draft:
    try:
        audience = build_audience(
            tags_any=fields["tags_any"], tags_all=fields["tags_all"], course=fields["course"],
            course_stage=fields["course_stage"], min_lesson=fields["min_lesson"], exclude_tags=fields["exclude_tags"],
        )  # fmt: skip
    except AudienceError as exc:
        audience_error = {"audience": str(exc).capitalize() + "."}
        try:  # report the other fields' mistakes at the same time
            service.check_draft(
                name=fields["name"], subject=fields["subject"], preheader=fields["preheader"], sender=fields["sender"],
                body_markdown=fields["body_markdown"], audience=build_audience(), senders=service.parse_senders(site.settings.campaign_senders),
                provider=fields["provider"], providers=list(site.settings.provider_settings),
            )  # fmt: skip
        except InputRefused as more:
            audience_error.update(more.fields)
        raise InputRefused(str(exc), audience_error) from None
    return service.check_draft(
        name=fields["name"], subject=fields["subject"], preheader=fields["preheader"], sender=fields["sender"],
        body_markdown=fields["body_markdown"], audience=audience, senders=service.parse_senders(site.settings.campaign_senders),
        provider=fields["provider"], providers=list(site.settings.provider_settings),
    )  # fmt: skip


@dataclass
class DraftForm:
    """The composer's fields as posted (create, save and the live preview share them), with the
    form's CSRF token; `fields()` cuts each to a length no real value reaches."""

    name: TextField = ""
    subject: TextField = ""
    preheader: TextField = ""
    sender: TextField = ""
    provider: TextField = ""
    body_markdown: TextField = ""
    tags_any: TextField = ""
    tags_all: TextField = ""
    course: TextField = ""
    course_stage: TextField = "any"
    min_lesson: TextField = ""
    exclude_tags: TextField = ""
    csrf_token: TextField = ""

    def fields(self) -> dict[str, Any]:
        return {
            "name": self.name[:400], "subject": self.subject[:600], "preheader": self.preheader[:400],
            "sender": self.sender[:400], "provider": self.provider[:64], "body_markdown": self.body_markdown, "tags_any": self.tags_any[:2000],
            "tags_all": self.tags_all[:2000], "course": self.course[:100], "course_stage": self.course_stage[:20],
            "min_lesson": self.min_lesson[:10], "exclude_tags": self.exclude_tags[:2000],
        }  # fmt: skip


DraftFormDep = Annotated[DraftForm, Depends()]


@router.get("/admin/campaigns/new", response_class=HTMLResponse)
def new_campaign(request: Request, site: SiteDep, actor: EditorPage) -> HTMLResponse:
    form = _form_of(None)
    senders = service.parse_senders(site.settings.campaign_senders)
    form["sender"] = senders[0].email if senders else ""
    # The form's idempotency key: whatever sends this form twice, it makes one draft.
    form["create_key"] = secrets.token_urlsafe(24)
    return _compose_page(site, request, actor, campaign_id=None, form=form)


def _save(
    site: Site, request: Request, actor: Actor, campaign_id: int | None, fields: dict[str, Any], action: str
) -> Response:
    """Every submit saves the draft first ("Save", "Count recipients", "Save and schedule"), then
    redirects (post/redirect/get: a reload repeats the GET, never the save)."""
    try:
        draft = _draft_from(site, fields)
        with site.sessions.begin() as session:
            if campaign_id is None:
                campaign = service.create_draft(
                    session, draft, author=actor.admin.admin_id if actor.admin else None, now=site.now(),
                    create_key=fields.get("create_key") or None,
                )  # fmt: skip
            else:
                campaign = service.update_draft(session, campaign_id, draft, now=site.now())
            saved_id = campaign.id
    except DraftExists as exc:
        return see_other(f"/admin/campaigns/{exc.campaign_id}/edit?notice=exists")
    except CampaignRefused as exc:
        if not is_input(exc):  # no such campaign, or one that is sending or done
            raise refusal_page(exc, refused="This campaign can no longer be edited") from None
        return _compose_page(site, request, actor, campaign_id=campaign_id, form=fields, errors=exc.fields, status=422)
    if action == "count":
        return see_other(f"/admin/campaigns/{saved_id}/edit?notice=saved&count=1")
    if action == "schedule":
        return see_other(f"/admin/campaigns/{saved_id}#schedule")
    return see_other(f"/admin/campaigns/{saved_id}/edit?notice=saved")


@router.post("/admin/campaigns/new", response_class=HTMLResponse)
def create_campaign(
    request: Request, site: SiteDep, actor: EditorPage, form: DraftFormDep, action: TextField = "save",
    create_key: TextField = "",
) -> Response:  # fmt: skip
    check_csrf(site, request, form.csrf_token)
    fields = form.fields()
    fields["create_key"] = create_key[:64]
    return _save(site, request, actor, None, fields, action)


@router.get("/admin/campaigns/{campaign_id}/edit", response_class=HTMLResponse)
def edit_campaign(
    campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, notice: str = "", count: str = ""
) -> Response:
    """The composer for a draft; `count=1` (after "Save and count recipients") adds how many it reaches now."""
    with site.sessions.begin() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise AdminPageError(404, "No such campaign", f"There is no campaign with id {campaign_id}.")
        if campaign.status not in service.EDITABLE:
            return see_other(f"/admin/campaigns/{campaign_id}")
        form = _form_of(campaign)
        audience_count = None
        if count == "1":
            try:
                audience_count = service.audience_count(session, service.audience_of(campaign))
            except CampaignRefused:
                audience_count = 0  # a tag or course gone since the save: it reaches nobody now
    return _compose_page(
        site, request, actor, campaign_id=campaign_id, form=form, notice=NOTICES.get(notice, ""), audience_count=audience_count
    )


@router.post("/admin/campaigns/{campaign_id}/edit", response_class=HTMLResponse)
def save_campaign(
    campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, form: DraftFormDep, action: TextField = "save"
) -> Response:
    check_csrf(site, request, form.csrf_token)
    return _save(site, request, actor, campaign_id, form.fields(), action)


@router.post("/admin/campaigns/{campaign_id}/duplicate", response_class=HTMLResponse)
def duplicate_campaign(campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, csrf_token: TextField = "") -> Response:
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            copy_id = service.duplicate(session, campaign_id, author=actor.admin.admin_id if actor.admin else None, now=site.now()).id
    except CampaignRefused as exc:
        raise refusal_page(exc) from None
    return see_other(f"/admin/campaigns/{copy_id}/edit?notice=duplicated")


@router.get("/admin/campaigns/{campaign_id}/schedule", response_class=HTMLResponse)
def confirm_schedule(
    campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, mode: str = "now", day: str = "",
    at: str = "", zone: str = "UTC",
) -> Response:  # fmt: skip
    """The step before scheduling: what will happen, in one sentence, and a button that does it.
    Nothing changes here; a schedule that would be refused is shown on the campaign page instead."""
    chosen = {"mode": mode[:10], "day": day[:20], "at": at[:10], "zone": zone[:64]}
    try:
        when = parse_schedule(chosen["mode"], chosen["day"], chosen["at"], chosen["zone"])
        with site.sessions.begin() as session:
            planned = service.plan_schedule(session, campaign_id, when, now=site.now())
            campaign = session.get(Campaign, campaign_id)
            session.expunge(campaign)
    except CampaignRefused as exc:  # a schedule that cannot be read included (ScheduleError)
        if is_input(exc):
            return detail_page(site, request, actor, campaign_id, status=422, schedule_error=str(exc).capitalize() + ".", schedule_form=chosen)
        raise refusal_page(exc) from None
    return admin_page(
        site, request, "confirm.html", actor=actor, campaign=campaign, title=f"Schedule “{campaign.name}”?",
        summary=service.describe_schedule(planned, when, now=site.now()),
        details=[f"Subject: {campaign.subject}", "Until its first message is written to the send queue you can still pause it or take it back to draft."],
        action=f"/admin/campaigns/{campaign_id}/schedule", hidden=chosen, confirm_label="Schedule",
        back_label="Back", back_anchor="#schedule", danger=False,
    )  # fmt: skip


@router.get("/admin/campaigns/{campaign_id}/cancel", response_class=HTMLResponse)
def confirm_cancel(campaign_id: int, request: Request, site: SiteDep, actor: EditorPage) -> Response:
    """The step before cancelling: how many messages will never be sent, and a button that does it."""
    with site.sessions.begin() as session:
        summary = campaign_summary(session, campaign_id, now=site.now())
        if summary is None:
            raise AdminPageError(404, "No such campaign", f"There is no campaign with id {campaign_id}.")
        campaign = summary.campaign
        if campaign.status in (CampaignStatus.DONE, CampaignStatus.CANCELLED):
            raise AdminPageError(409, "That cannot be done now", f"Campaign {campaign_id} is {campaign.status}: there is nothing left to cancel.")
        progress = summary.progress
        if campaign.fanned_out_at is not None:
            unsent = progress.remaining
            said = f"{unsent:,} message{'' if unsent == 1 else 's'} not yet sent will be settled as cancelled and never sent."
            details = [f"The {progress.sent:,} already sent stay sent." if progress.sent else "None has been sent yet."]
        else:
            readers = service.audience_count(session, service.audience_of(campaign)) if campaign.status != CampaignStatus.DRAFT else 0
            said = (
                f"Nobody will get it: it was to go to {readers:,} reader{'' if readers == 1 else 's'}."
                if campaign.status != CampaignStatus.DRAFT
                else "It will never be sent; its test sends stay in the record."
            )
            details = []
        session.expunge(campaign)
    return admin_page(
        site, request, "confirm.html", actor=actor, campaign=campaign, title=f"Cancel “{campaign.name}”?",
        summary=said, details=[*details, "This cannot be undone: duplicate the campaign to send it later."],
        action=f"/admin/campaigns/{campaign_id}/cancel", hidden={}, confirm_label="Cancel campaign",
        back_label="Keep it", back_anchor="", danger=True,
    )  # fmt: skip


@router.post("/admin/campaigns/{campaign_id}/schedule", response_class=HTMLResponse)
def schedule_campaign(
    campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, mode: TextField = "now", day: TextField = "",
    at: TextField = "", zone: TextField = "UTC", csrf_token: TextField = "",
) -> Response:  # fmt: skip
    check_csrf(site, request, csrf_token)
    try:
        when = parse_schedule(mode[:10], day[:20], at[:10], zone[:64])
        with site.sessions.begin() as session:
            result = service.schedule(session, campaign_id, when, now=site.now())
    except CampaignRefused as exc:  # a schedule that cannot be read included (ScheduleError)
        if is_input(exc):
            return detail_page(site, request, actor, campaign_id, status=422, schedule_error=str(exc).capitalize() + ".",
                           schedule_form={"mode": mode, "day": day, "at": at, "zone": zone})  # fmt: skip
        raise refusal_page(exc) from None
    return see_other(f"/admin/campaigns/{campaign_id}?scheduled={result.recipients}&at_once={result.at_once}")


def _state_change(site: Site, request: Request, campaign_id: int, csrf_token: str, change: str) -> Response:
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            service.change_state(session, campaign_id, change, now=site.now())
    except CampaignRefused as exc:
        raise refusal_page(exc) from None
    notice = {"pause": "paused", "resume": "resumed", "cancel": "cancelled", "unschedule": "unscheduled"}[change]
    return see_other(f"/admin/campaigns/{campaign_id}?notice={notice}")


@router.post("/admin/campaigns/{campaign_id}/pause", response_class=HTMLResponse)
def pause_campaign(campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, csrf_token: TextField = "") -> Response:
    return _state_change(site, request, campaign_id, csrf_token, "pause")


@router.post("/admin/campaigns/{campaign_id}/resume", response_class=HTMLResponse)
def resume_campaign(campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, csrf_token: TextField = "") -> Response:
    return _state_change(site, request, campaign_id, csrf_token, "resume")


@router.post("/admin/campaigns/{campaign_id}/cancel", response_class=HTMLResponse)
def cancel_campaign(campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, csrf_token: TextField = "") -> Response:
    return _state_change(site, request, campaign_id, csrf_token, "cancel")


@router.post("/admin/campaigns/{campaign_id}/delete", response_class=HTMLResponse)
def delete_campaign(campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, csrf_token: TextField = "") -> Response:
    """Delete a draft that never reached the ledger (else 409 with the reason)."""
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            service.delete_draft(session, campaign_id)
    except CampaignRefused as exc:
        raise refusal_page(exc) from None
    return see_other("/admin/campaigns?notice=deleted")


@router.post("/admin/campaigns/{campaign_id}/unschedule", response_class=HTMLResponse)
def unschedule_campaign(campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, csrf_token: TextField = "") -> Response:
    return _state_change(site, request, campaign_id, csrf_token, "unschedule")


@router.get("/admin/campaigns/{campaign_id}/progress.json")
def campaign_progress(campaign_id: int, site: SiteDep, actor: ViewerPage) -> JSONResponse:
    """What the detail page's script polls: the numbers it shows, and whether to keep polling."""
    with site.sessions.begin() as session:
        summary = campaign_summary(session, campaign_id, now=site.now())
        if summary is None:
            return JSONResponse({"detail": f"no campaign with id {campaign_id}"}, status_code=404)
        p = summary.progress
        status = summary.campaign.status
    return JSONResponse(
        {
            "status": status, "total": p.total, "sent": p.sent, "failed": p.failed, "bounced": p.bounced,
            "cancelled": p.cancelled, "remaining": p.remaining, "per_minute": p.per_minute, "eta_seconds": p.eta_seconds,
            "percent_settled": p.percent_settled,
            "final": status in (CampaignStatus.DONE, CampaignStatus.CANCELLED, CampaignStatus.DRAFT),
        },  # fmt: skip
        headers={"cache-control": "no-store"},
    )


# --- preview -------------------------------------------------------------------------------------


def _preview(site: Site, campaign_id: int, subscriber: str) -> tuple[Campaign, Preview]:
    with site.sessions.begin() as session:
        composer = Composer.from_settings(site.settings, renderer=site.renderer)
        found = campaign_preview(session, composer, campaign_id, subscriber)
    if found is None:
        raise AdminPageError(404, "No such campaign", f"There is no campaign with id {campaign_id}.")
    return found


def _preview_page(
    site: Site, request: Request, actor: Actor, campaign_id: int, subscriber: str, *, status: int = 200,
    test_error: str = "", test_sent: str = "", test_address: str = "",
) -> HTMLResponse:  # fmt: skip
    campaign, preview = _preview(site, campaign_id, subscriber[:320])
    composed, note, samples = preview.composed, preview.note, preview.samples
    return admin_page(
        site, request, "preview.html", actor=actor, status=status, campaign=campaign, composed=composed,
        message=composed.message, note=note, samples=samples, subscriber=composed.message.recipient_address,
        can_edit=actor.may(AdminRole.EDITOR), test_error=test_error, test_sent=test_sent,
        test_address=test_address or (actor.admin.email if actor.admin else ""),
    )  # fmt: skip


@router.get("/admin/campaigns/{campaign_id}/preview", response_class=HTMLResponse)
def preview_page(
    campaign_id: int, request: Request, site: SiteDep, actor: ViewerPage, subscriber: str = "", sent: str = ""
) -> HTMLResponse:
    return _preview_page(site, request, actor, campaign_id, subscriber, test_sent=sent[:320])


@router.post("/admin/campaigns/{campaign_id}/test", response_class=HTMLResponse)
def send_test(
    campaign_id: int, request: Request, site: SiteDep, actor: EditorPage, test_address: TextField = "",
    preview_as: TextField = "", csrf_token: TextField = "",
) -> Response:  # fmt: skip
    """A test send through the ledger (ahead of bulk mail, in no count), then back to the preview."""
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            service.send_test(session, campaign_id, address=test_address[:320], preview_as=preview_as[:320], now=site.now())
    except CampaignRefused as exc:
        if status_of(exc) == 404:
            raise refusal_page(exc) from None
        return _preview_page(
            site, request, actor, campaign_id, preview_as, status=422, test_error=str(exc).capitalize() + ".",
            test_address=test_address[:320],
        )  # fmt: skip
    query = urlencode({"subscriber": preview_as[:320], "sent": test_address.strip()[:320]})
    return see_other(f"/admin/campaigns/{campaign_id}/preview?{query}")


def _framed_email(html: str, status: int = 200) -> HTMLResponse:
    """An email's HTML part alone, for a preview frame: its own CSP, like the public view-in-browser
    page (inline styles, remote images, no script), framable by our pages only."""
    from course.web.security import EMAIL_VIEW_CSP

    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "content-security-policy": EMAIL_VIEW_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'"),
            "x-frame-options": "SAMEORIGIN",
            "cache-control": "no-store",
        },
    )


@router.get("/admin/campaigns/{campaign_id}/preview.html", response_class=HTMLResponse)
def preview_html(campaign_id: int, site: SiteDep, actor: ViewerPage, subscriber: str = "") -> HTMLResponse:
    """The saved campaign's HTML part, for the preview page's frame."""
    _, preview = _preview(site, campaign_id, subscriber[:320])
    return _framed_email(preview.composed.email.html)


@router.post("/admin/campaigns/draft-preview", response_class=HTMLResponse)
def draft_preview(
    request: Request, site: SiteDep, actor: EditorPage, form: DraftFormDep, preview_as: TextField = ""
) -> HTMLResponse:
    """The composer's live preview: the form as it is now, unsaved, composed for `preview_as` (blank:
    the audience's first reader) into the frame beside it; the composer's script posts the form here
    as the editor types (without script, the Preview button does). Saves nothing; a draft with
    mistakes shows them instead, as the save would."""
    check_csrf(site, request, form.csrf_token)
    fields = form.fields()
    if not fields["name"].strip():
        fields["name"] = "Preview"  # the name is for the admin only: no reason to hold the preview back
    try:
        draft = _draft_from(site, fields)
    except CampaignRefused as exc:
        mistakes = "".join(f"<li>{escape(message)}</li>" for message in (exc.fields or {"": str(exc)}).values())
        return _framed_email(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Preview</title></head>'
            '<body style="font: 15px/1.5 system-ui, sans-serif; color: #1f2933; margin: 1rem">'
            f'<main><h1 style="font-size: 1.1rem">Not yet a message</h1><ul>{mistakes}</ul></main></body></html>'
        )
    with site.sessions.begin() as session:
        composer = Composer.from_settings(site.settings, renderer=site.renderer)
        preview = draft_preview_of(session, composer, draft, preview_as)
    return _framed_email(preview.composed.email.html)
