"""The campaign service's refusals become HTTP statuses by their type, once, for the admin pages and
the API: a message's words never decide (rewording "would reach nobody" once turned a 400 into a 409)."""

from __future__ import annotations

import pytest

from course.campaigns.audience import AudienceError
from course.campaigns.refusals import AudienceEmpty, CampaignNotFound, CampaignRefused, DraftExists, InputRefused, StateRefused
from course.campaigns.timing import ScheduleError
from course.web.admin.refusals import is_input, refusal_json, refusal_page, status_of


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (CampaignNotFound("no campaign with id 7"), 404),
        (StateRefused("campaign 7 is sending: it would reach nobody new"), 409),  # the words do not matter
        (StateRefused("campaign 7 is done: it cannot be paused"), 409),
        (DraftExists(7), 409),
        (AudienceEmpty("the audience is empty today"), 400),
        (InputRefused("the campaign has mistakes", {"subject": "The subject is empty."}), 400),
        (InputRefused("2026-01-01 09:00 UTC is gone"), 400),
        (AudienceError("no subscriber has the tag 'x'"), 400),
        (ScheduleError("'x' is not a date: use YYYY-MM-DD", "day"), 400),
    ],
)
def test_the_status_follows_the_type(refusal: CampaignRefused, status: int) -> None:
    assert status_of(refusal) == status
    assert is_input(refusal) == (status == 400)
    answer = refusal_json(refusal)
    assert answer.status_code == status
    assert answer.body.decode().startswith('{"detail":')


def test_the_fields_of_an_input_refusal_are_kept() -> None:
    assert AudienceError("no course 'bread'").fields == {"audience": "no course 'bread'"}
    assert ScheduleError("'25:00' is not a time: use HH:MM", "at").fields == {"at": "'25:00' is not a time: use HH:MM"}
    assert b'"fields":{"at":' in refusal_json(ScheduleError("'25:00' is not a time", "at")).body


def test_the_admin_page_for_a_refusal() -> None:
    missing = refusal_page(CampaignNotFound("no campaign with id 7"))
    assert (missing.status, missing.title, missing.message) == (404, "No such campaign", "No campaign with id 7.")
    refused = refusal_page(StateRefused("campaign 7 is done: it cannot be paused"))
    assert (refused.status, refused.title) == (409, "That cannot be done now")
