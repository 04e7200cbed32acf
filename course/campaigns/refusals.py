"""What the campaign service refuses, by kind, so a caller picks its answer by the type and never by
the words of the message (rewording a message must not turn a 400 into a 409). The web maps each
kind to an HTTP status once (course/web/admin/refusals.py); the CLI prints the message.

Every refusal's message names the campaign, field, tag or course it concerns; `fields` maps a
form's fields to their own message where the refusal is about input (empty otherwise)."""

from __future__ import annotations


class CampaignRefused(ValueError):
    """Something the campaign service will not do; the subclasses say why."""

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class CampaignNotFound(CampaignRefused):
    """No campaign with that id."""


class StateRefused(CampaignRefused):
    """The campaign's state does not allow it (editing one that is sending, pausing one that is done)."""


class InputRefused(CampaignRefused):
    """Input the rules refuse: `fields` says what is wrong with each field, where it is one field's."""


class AudienceEmpty(CampaignRefused):
    """The audience has no active subscriber now: the campaign would reach nobody."""


class DraftExists(CampaignRefused):
    """The form with this idempotency key created a draft already: `campaign_id`."""

    def __init__(self, campaign_id: int) -> None:
        super().__init__(f"this form already made campaign {campaign_id}")
        self.campaign_id = campaign_id
