"""Which email a delivery becomes, answered in one place.

One entry per kind of delivery, each from the content the ledger read for it to a finished message:

- `Composer.lesson`: a lesson of a course, with the course's unsubscribe link and List-Id;
- `Composer.campaign`: a newsletter, whose unsubscribe link covers every course;
- `Composer.account_mail`: confirmation and the like (TRANSACTIONAL_MAIL), whose main link is the
  signed `action_url`;
- `Composer.admin_invitation`: an owner's invitation to the admin, to no subscriber, whose
  `action_url` is the invitation's one-time sign-in link;
- `Composer.delivery`: any DeliveryJob of a taken-over Batch, by its kind (the sender's entry).

Each returns a ComposedEmail: the envelope sender, the filled email (subject, text, HTML: what the
recipient reads, which the view-in-browser page shows) and the message, whose bytes
`message_bytes()` builds. Nothing here reads or writes the database or talks to a server.

A batch renders each lesson, newsletter or account mail once (CSS inlined once) and fills it per
recipient: pass one TemplateCache for the whole batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

from course.campaigns.service import parse_senders
from course.audience.enrollment import name_to_greet
from course.clock import Clock, get_clock
from course.delivery.envelope import unsubscribe_address
from course.delivery.links import TEST_MAIL_PATHS, LinkPurpose, Signer, signer_from_settings
from course.delivery.mime import OutgoingMessage, build_message
from course.content.merge_tags import first_name_of
from course.delivery.render import RenderedEmail, Renderer, Template, greeting_for
from course.i18n import DEFAULT_LANGUAGE, translate
from course.ledger import Batch, CampaignContent, CourseHeader, DeliveryJob, InvitationContent, LessonContent, message_ids_from_secret
from course.models import Campaign, CampaignStatus, Course, DeliveryKind, Lesson, Subscriber, SubscriberStatus
from course.settings import Settings

# Account mail: template name -> (subject, purpose of the signed link in its `action_url` slot). The
# subject is a message of the catalogues (course/locales), translated into the course's language.
TRANSACTIONAL_MAIL: dict[str, tuple[str, LinkPurpose]] = {
    "confirm": ("Please confirm your place in %(course)s", LinkPurpose.CONFIRM),
    "already_enrolled": ("You are already enrolled in %(course)s", LinkPurpose.PREFERENCES),
    "erase": ("Confirm that we should erase your data", LinkPurpose.ERASE),
}


class NothingToCompose(ValueError):
    """The delivery names no content this composer can turn into an email."""


@dataclass(frozen=True)
class Recipient:
    """Who a delivery goes to, and the delivery's id (signed into its view link and Message-ID)."""

    delivery_id: int
    subscriber_id: int | None  # None: mail to no subscriber (an admin invitation)
    name: str
    email: str
    # False for an address not yet confirmed: its name, typed by whoever filled in the form, is in
    # the greeting (one word of letters at most) but not in To:.
    confirmed: bool = True

    @classmethod
    def of_job(cls, job: DeliveryJob, batch: Batch | None = None) -> Recipient:
        # A subscriber not yet confirmed has no name of its own: a confirmation greets by the name
        # typed with the signup it confirms. Every name is shown only if it reads as a name
        # (Composer._compose), so a link typed as a "first name" greets no one. Mail to no
        # subscriber (an admin invitation) goes to the row's own address.
        email = job.email if job.email is not None else (job.test_address or "")
        if job.subscriber_status == SubscriberStatus.ACTIVE:
            return cls(job.delivery_id, job.subscriber_id, job.name or "", email)
        name = batch.signup_names.get(job.delivery_id, "") if batch is not None else ""
        return cls(job.delivery_id, job.subscriber_id, name, email, confirmed=False)

    @classmethod
    def of_subscriber(cls, subscriber: Subscriber, *, delivery_id: int) -> Recipient:
        return cls(delivery_id, subscriber.id, subscriber.name, subscriber.email)


@dataclass
class TemplateCache:
    """The templates of one batch, each rendered with its CSS inlined once and then filled per
    recipient. Keyed by kind and content id: ("lesson", lesson id), ("campaign", campaign id),
    (template name, course id)."""

    templates: dict[tuple[str, int], Template] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.templates)


@dataclass(frozen=True)
class ComposedEmail:
    envelope_from: str
    email: RenderedEmail  # subject, text and HTML as the recipient reads them
    message: OutgoingMessage

    def message_bytes(self) -> bytes:
        return build_message(self.message)


class Composer:
    def __init__(self, settings: Settings, *, renderer: Renderer, signer: Signer, clock: Clock) -> None:
        self.settings = settings
        self.message_ids = message_ids_from_secret(settings.list_id_domain, settings.secret_key)
        self.renderer = renderer
        self.signer = signer
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, renderer: Renderer | None = None, clock: Clock | None = None) -> Composer:
        """A composer signing with the settings' secret; pass the caller's renderer to share its
        template environment, and its clock for the messages' Date (links are stamped in real time)."""
        return cls(
            settings,
            renderer=renderer or Renderer(settings.templates_dir, auto_reload=settings.template_reload),
            signer=signer_from_settings(settings),
            clock=clock or get_clock(settings),
        )

    # --- one entry per kind --------------------------------------------------------------------

    def delivery(
        self, job: DeliveryJob, batch: Batch, templates: TemplateCache | None = None, *, in_browser: str | None = None
    ) -> ComposedEmail:
        """The email a taken-over delivery becomes, from the content its batch read.
        `in_browser`: for the view-in-browser page, whose link is forwarded: composed for nobody (no
        name, no address) with its account links leading to this URL instead (a test send keeps
        its test-mail pages)."""
        if in_browser is None:
            recipient = Recipient.of_job(job, batch)
        else:
            recipient = Recipient(job.delivery_id, job.subscriber_id, "", "")
        if job.kind == DeliveryKind.LESSON and job.lesson_id is not None and job.lesson_id in batch.lessons:
            return self.lesson(recipient, batch.lessons[job.lesson_id], templates, account_links_to=in_browser)
        if job.kind == DeliveryKind.CAMPAIGN and job.campaign_id is not None and job.campaign_id in batch.campaigns:
            campaign = batch.campaigns[job.campaign_id]
            return self.campaign(
                recipient, campaign, templates, account_links_to=in_browser,
                lesson_number=batch.lesson_number(campaign, job.subscriber_id),
            )  # fmt: skip
        if job.kind == DeliveryKind.CAMPAIGN_TEST and job.test_address:
            # The content as it was when the test was asked for; a row queued before those were kept
            # (migration 0014) shows the campaign as it is now. Course merge values are today's.
            live = batch.campaigns.get(job.test_campaign_id or 0)
            shown = batch.campaign_tests.get(job.delivery_id) or live
            if shown is not None:
                if live is not None:
                    shown = replace(shown, course_id=live.course_id, course_title=live.course_title)
                return self.campaign_test(
                    recipient, shown, job.test_address, lesson_number=batch.lesson_number(shown, job.subscriber_id)
                )
        if job.kind == DeliveryKind.LESSON_TEST and job.test_address and job.test_lesson_id in batch.lessons:
            return self.lesson_test(recipient, batch.lessons[job.test_lesson_id], job.test_address)  # type: ignore[index]
        if job.kind == DeliveryKind.ADMIN_INVITATION and job.invitation_id in batch.invitations:
            return self.admin_invitation(recipient, batch.invitations[job.invitation_id])
        if (
            job.kind == DeliveryKind.TRANSACTIONAL
            and job.template in TRANSACTIONAL_MAIL
            and job.course_id
            and job.course_id in batch.courses
        ):
            return self.account_mail(recipient, job.template, batch.courses[job.course_id], templates)
        raise NothingToCompose(f"delivery {job.delivery_id} ({job.kind}, template {job.template!r}) has nothing to send")

    def lesson(
        self,
        recipient: Recipient,
        lesson: LessonContent,
        templates: TemplateCache | None = None,
        *,
        account_links_to: str | None = None,
        preview: bool = False,
    ) -> ComposedEmail:
        """`preview`: for the admin's lesson preview: the reader's name, but preference and
        unsubscribe links (List-Unsubscribe included) that lead to the test-mail pages, which say
        what the link does and act on nobody."""
        course = lesson.course
        cache = _templates(templates)
        key = ("lesson", lesson.lesson_id)
        template = cache.get(key)
        if template is None:
            template = cache[key] = self.renderer.lesson_template(course=course, lesson=lesson)
        return self._compose(
            recipient,
            template,
            sender=(course.sender_name, course.sender_email),
            list_id=f"{course.title} <{course.slug}.{self.settings.list_id_domain}>",
            **self._account_links(
                acting_on_nobody=preview,
                unsubscribe_url=self.signer.url(LinkPurpose.UNSUBSCRIBE, recipient.subscriber_id, course.course_id),
            ),
            account_links_to=account_links_to,
            language=course.language,
            feedback_id=self.feedback_id(f"lesson{lesson.lesson_id}", f"course{course.course_id}", "lesson"),
            unsubscribe_scope=course.course_id,
        )

    def lesson_test(self, recipient: Recipient, lesson: LessonContent, address: str) -> ComposedEmail:
        """An editor's "send me this lesson": the lesson as `recipient` gets it (their name), to
        `address`, its subject marked "[Test]", its preference and unsubscribe links (List-Unsubscribe
        included) leading to the pages that act on nobody, as a campaign test's do."""
        course = lesson.course
        template = self.renderer.lesson_template(course=course, lesson=lesson, test_send=True)
        template = replace(template, subject=f"[Test] {template.subject}")
        composed = self._compose(
            recipient,
            template,
            sender=(course.sender_name, course.sender_email),
            list_id=f"{course.title} <{course.slug}.{self.settings.list_id_domain}>",
            **self._account_links(acting_on_nobody=True),
            language=course.language,
        )
        return replace(composed, message=replace(composed.message, recipient_address=address))

    def campaign(
        self,
        recipient: Recipient,
        campaign: CampaignContent,
        templates: TemplateCache | None = None,
        *,
        account_links_to: str | None = None,
        lesson_number: int | None = None,
        preview: bool = False,
    ) -> ComposedEmail:
        """`lesson_number`: the last lesson the recipient was sent in the course the campaign's
        audience is made of, for its `{{ lesson_number }}` merge tag (None: none, or no such tag).
        `preview`: for the admin's previews: the reader's name and merge values, but preference and
        unsubscribe links (List-Unsubscribe included) that lead to the test-mail pages, which say
        what the link does and act on nobody."""
        cache = _templates(templates)
        key = ("campaign", campaign.campaign_id)
        template = cache.get(key)
        if template is None:
            template = cache[key] = self.renderer.campaign_template(
                subject=campaign.subject,
                body_markdown=campaign.body_markdown,
                sender_name=campaign.sender_name,
                preheader=campaign.preheader,
                language=self.settings.site_language,
            )
        return self._compose(
            recipient,
            template,
            sender=(campaign.sender_name, campaign.sender_email),
            list_id=f"{campaign.sender_name} <newsletter.{self.settings.list_id_domain}>",
            **self._account_links(
                acting_on_nobody=preview, unsubscribe_url=self.signer.url(LinkPurpose.UNSUBSCRIBE, recipient.subscriber_id, None)
            ),
            account_links_to=account_links_to,
            language=self.settings.site_language,
            merge_values=_merge_values(template, recipient, campaign, lesson_number),
            feedback_id=self.feedback_id(f"campaign{campaign.campaign_id}", "newsletter", "campaign"),
        )

    def campaign_test(
        self, recipient: Recipient, campaign: CampaignContent, address: str, *, lesson_number: int | None = None
    ) -> ComposedEmail:
        """A test send: the campaign as `recipient` gets it (their name), to `address`, its subject
        marked "[Test]". Its preference and unsubscribe links, List-Unsubscribe included, lead to
        pages that say what the link does in the real mail and act on nobody (the footer says so);
        its view link shows the test as it was sent."""
        template = self.renderer.campaign_template(
            subject=f"[Test] {campaign.subject}",
            body_markdown=campaign.body_markdown,
            sender_name=campaign.sender_name,
            preheader=campaign.preheader,
            language=self.settings.site_language,
            test_send=True,
        )
        composed = self._compose(
            recipient,
            template,
            sender=(campaign.sender_name, campaign.sender_email),
            list_id=f"{campaign.sender_name} <newsletter.{self.settings.list_id_domain}>",
            **self._account_links(acting_on_nobody=True),
            language=self.settings.site_language,
            merge_values=_merge_values(template, recipient, campaign, lesson_number),
        )
        return replace(composed, message=replace(composed.message, recipient_address=address))

    def account_mail(
        self, recipient: Recipient, template_name: str, course: CourseHeader, templates: TemplateCache | None = None
    ) -> ComposedEmail:
        if template_name not in TRANSACTIONAL_MAIL:
            raise NothingToCompose(
                f"delivery {recipient.delivery_id}: no account mail named {template_name!r} "
                f"(known: {', '.join(TRANSACTIONAL_MAIL)})"
            )
        subject_format, purpose = TRANSACTIONAL_MAIL[template_name]
        cache = _templates(templates)
        key = (template_name, course.course_id)
        template = cache.get(key)
        if template is None:
            template = cache[key] = self.renderer.transactional_template(
                template_name,
                subject=translate(course.language, subject_format, course=course.title),
                context={
                    "course": course, "link_valid_days": self.settings.confirm_link_max_age_days,
                    "link_valid_hours": self.settings.erase_link_max_age_hours,
                },  # fmt: skip
            )
        return self._compose(
            recipient,
            template,
            sender=(course.sender_name, course.sender_email),
            list_id="",
            unsubscribe_url=self.signer.url(LinkPurpose.UNSUBSCRIBE, recipient.subscriber_id, course.course_id),
            action_url=self.signer.url(purpose, recipient.subscriber_id, course.course_id, *_names_its_signup(purpose, recipient)),
            language=course.language,
            feedback_id=self.feedback_id(template_name, f"course{course.course_id}", "account"),
            unsubscribe_scope=course.course_id,
        )

    def admin_invitation(self, recipient: Recipient, invitation: InvitationContent) -> ComposedEmail:
        """An owner's invitation to the web admin: its one action is the signed sign-in link naming
        the invitation and its current nonce. From the first campaign sender; no list headers, no
        subscriber links (the invitee is no reader). The admin speaks English."""
        senders = parse_senders(self.settings.campaign_senders)
        if not senders:
            raise NothingToCompose(f"delivery {recipient.delivery_id}: COURSE_CAMPAIGN_SENDERS names no valid sender")
        sender_name, sender_address = senders[0].name, senders[0].email
        link = self.signer.url(LinkPurpose.ADMIN_INVITATION, invitation.invitation_id, invitation.link_nonce)
        template = self.renderer.transactional_template(
            "admin_invitation",
            subject="You are invited to the course admin",
            context={
                "role": invitation.role,
                "expires_at": invitation.expires_at,
                "valid_hours": self.settings.admin_invitation_hours,
                "admin_url": self.settings.base_url.rstrip("/") + "/admin/",
            },
        )
        email = template.fill({"action_url": link})
        return ComposedEmail(
            envelope_from=sender_address,
            email=email,
            message=OutgoingMessage(
                sender_name=sender_name,
                sender_address=sender_address,
                recipient_name="",
                recipient_address=invitation.email,
                subject=email.subject,
                text=email.text,
                html=email.html,
                message_id=self.message_ids.for_delivery(recipient.delivery_id),
                date=self.clock.now(),
                list_id="",
                unsubscribe_url="",
                unsubscribe_mailto="",
            ),
        )

    # --- shared by every kind ------------------------------------------------------------------

    def _mailto(self, recipient: Recipient, course_id: int | None) -> str:
        """The List-Unsubscribe mailto: with a bounce domain, the reader's signed address there (read
        from the bounce mailbox: course/bounces/record.py); else the one COURSE_UNSUBSCRIBE_MAILTO."""
        if not self.settings.bounce_domain:
            return self.settings.unsubscribe_mailto
        return unsubscribe_address(recipient.subscriber_id, course_id, secret=self.settings.secret_key, domain=self.settings.bounce_domain)

    def feedback_id(self, campaign: str, course: str, kind: str) -> str:
        """Gmail's Feedback-ID (its feedback loop reports complaint rates per value of each field):
        `<lesson or campaign>:<course>:<kind>:<sender id>`, ids only, no colon inside a field. The
        sender id is the List-Id domain, the same on every message."""
        return _feedback_id(campaign, course, kind, self.settings.list_id_domain)

    def _account_links(self, *, acting_on_nobody: bool, unsubscribe_url: str = "") -> dict[str, str]:
        """A mail's account links for _compose: the reader's signed unsubscribe link (their
        preference link and the settings' mailto follow in _compose); or, for a test send or an
        admin's preview, the test-mail pages, which say what the link does and act on nobody, and
        no mailto (a mail to it would act on whoever sends it)."""
        if not acting_on_nobody:
            return {"unsubscribe_url": unsubscribe_url}
        base_url = self.settings.base_url.rstrip("/")
        return {
            "unsubscribe_url": base_url + TEST_MAIL_PATHS[LinkPurpose.UNSUBSCRIBE],
            "preferences_url": base_url + TEST_MAIL_PATHS[LinkPurpose.PREFERENCES],
            "unsubscribe_mailto": "",
        }

    def _compose(
        self,
        recipient: Recipient,
        template: Template,
        *,
        sender: tuple[str, str],
        list_id: str,
        unsubscribe_url: str,
        action_url: str | None = None,
        account_links_to: str | None = None,
        preferences_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        language: str = DEFAULT_LANGUAGE,
        merge_values: dict[str, str] | None = None,
        feedback_id: str = "",
        unsubscribe_scope: int | None = None,
    ) -> ComposedEmail:
        """`account_links_to`: for a copy anyone may hold (the view-in-browser page), the URL the
        preferences and unsubscribe links lead to instead of the reader's signed ones.
        `merge_values`: the recipient's values for a newsletter's merge tags (its links are the
        preferences and unsubscribe links below).
        `preferences_url`, `unsubscribe_mailto`: instead of the reader's signed link and the
        settings' address (a test send's).
        `feedback_id`: the Feedback-ID header's value (list mail only; see feedback_id).
        `unsubscribe_scope`: the course the List-Unsubscribe mailto leaves (None: everything), as
        the unsubscribe link's; with a bounce domain the mailto is the reader's own signed address."""
        # Only a name that reads as one, without bidirectional controls: stored names predate the
        # check at signup (course.audience.enrollment.accepted_name).
        name = name_to_greet(recipient.name)
        values = {
            "greeting": greeting_for(name, language),
            "view_url": self.signer.url(LinkPurpose.VIEW, recipient.delivery_id),
            "preferences_url": account_links_to
            or preferences_url
            or self.signer.url(LinkPurpose.PREFERENCES, recipient.subscriber_id),
            "unsubscribe_url": account_links_to or unsubscribe_url,
        }
        if action_url is not None:
            values["action_url"] = action_url
        if merge_values:
            values.update(merge_values)
        email = template.fill(values)
        return ComposedEmail(
            envelope_from=sender[1],
            email=email,
            message=OutgoingMessage(
                sender_name=sender[0],
                sender_address=sender[1],
                recipient_name=name if recipient.confirmed else "",
                recipient_address=recipient.email,
                subject=email.subject,
                text=email.text,
                html=email.html,
                message_id=self.message_ids.for_delivery(recipient.delivery_id),
                date=self.clock.now(),
                list_id=list_id,
                unsubscribe_url=unsubscribe_url,
                unsubscribe_mailto=self._mailto(recipient, unsubscribe_scope) if unsubscribe_mailto is None else unsubscribe_mailto,
                extra_headers=(("Feedback-ID", feedback_id),) if feedback_id else (),
            ),
        )


@functools.lru_cache(maxsize=1024)
def _feedback_id(*parts: str) -> str:
    # The same for every message of one lesson or campaign: joined once, not per message.
    return ":".join(part.replace(":", "-") for part in parts)


def _merge_values(
    template: Template, recipient: Recipient, campaign: CampaignContent, lesson_number: int | None
) -> dict[str, str] | None:
    """The recipient's values for a newsletter's merge tags (None for a template that has none).
    The first name is the greeting's: only a name that reads as one."""
    if not template.merge_tags:
        return None
    return {
        "first_name": first_name_of(name_to_greet(recipient.name)),
        "email": recipient.email,
        "course_title": campaign.course_title,
        "lesson_number": str(lesson_number) if lesson_number else "",
    }


def _names_its_signup(purpose: LinkPurpose, recipient: Recipient) -> list[int]:
    """A confirmation link names its own mail, and so the signup whose details it confirms
    (course.audience.signup_requests): a later signup never changes what an earlier link confirms."""
    return [recipient.delivery_id] if purpose == LinkPurpose.CONFIRM else []


def _templates(templates: TemplateCache | None) -> dict[tuple[str, int], Template]:
    return (templates if templates is not None else TemplateCache()).templates


# --- content from stored rows, for callers that read rows themselves (the view-in-browser page) ---


def course_header(course: Course) -> CourseHeader:
    # A Course not yet flushed has no language until its column default applies.
    language = course.language or DEFAULT_LANGUAGE
    return CourseHeader(course.id, course.slug, course.title, course.sender_name, course.sender_email, language)


def lesson_content(lesson: Lesson, *, lesson_count: int | None) -> LessonContent:
    """A stored lesson as the ledger's take_over reads it; `lesson_count` is the course's live
    lessons (the lesson's own position when unknown)."""
    return LessonContent(
        lesson_id=lesson.id,
        course=course_header(lesson.course),
        position=lesson.position,
        lesson_count=lesson_count or lesson.position,
        title=lesson.title,
        body=lesson.body,
        reading_minutes=lesson.reading_minutes,
        retired=lesson.retired_at is not None,
    )


def campaign_content(campaign: Campaign) -> CampaignContent:
    return CampaignContent(
        campaign.id,
        campaign.name,
        campaign.subject,
        campaign.body_markdown,
        campaign.sender_name,
        campaign.sender_email,
        campaign.status == CampaignStatus.CANCELLED,
        campaign.preheader or "",
    )
