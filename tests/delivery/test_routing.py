"""Which provider a message takes (course.delivery.routing), the pause back-off and the urgent
reserve (course.delivery.gate): pure decisions, tested without any service."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from course.delivery.gate import PausePolicy, reserve_of
from course.delivery.routing import choose, route, serves_domain
from course.settings import ProviderSettings, Settings

PROVIDERS = {
    "default": ProviderSettings(host="127.0.0.1"),
    "ses": ProviderSettings(host="email-smtp.eu-west-1.amazonaws.com", from_domains=("example.org",)),
    "postfix": ProviderSettings(host="mail.example.net", from_domains=("news.example.net",)),
}


def test_own_provider_comes_first_then_from_domain_then_fallback() -> None:
    assert route(own="postfix", from_address="a@example.org", providers=PROVIDERS, fallback=("default",)) == (
        "postfix",
        "ses",
        "default",
    )


def test_from_domain_routes_subdomains_but_not_lookalikes() -> None:
    assert route(own=None, from_address="a@lists.example.org", providers=PROVIDERS, fallback=("default",)) == ("ses", "default")
    assert route(own=None, from_address="a@badexample.org", providers=PROVIDERS, fallback=("default",)) == ("default",)
    assert serves_domain(PROVIDERS["ses"], "EXAMPLE.ORG".lower())


def test_unknown_names_are_left_out_and_each_name_appears_once() -> None:
    assert route(own="gone", from_address="a@example.org", providers=PROVIDERS, fallback=("ses", "default", "gone")) == ("ses", "default")


def test_the_fallback_order_is_kept() -> None:
    assert route(own=None, from_address="a@x.test", providers=PROVIDERS, fallback=("postfix", "default")) == ("postfix", "default")


def test_choose_skips_paused_providers_and_says_when_all_are_paused() -> None:
    soon, later = datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
    assert choose(("ses", "default"), {"ses": soon}) == ("default", None)
    assert choose(("ses", "default"), {"ses": later, "default": soon}) == (None, soon)
    assert choose((), {}) == (None, None)


def test_pauses_double_up_to_the_cap() -> None:
    policy = PausePolicy(pause_seconds=30, pause_max_seconds=200, failures_to_pause=3)
    assert [policy.pause_for(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 200]


@pytest.mark.parametrize(("quota", "urgent", "reserve"), [(None, False, 0), (1000, False, 20), (1000, True, 0), (10, False, 1), (1, False, 0)])
def test_bulk_mail_leaves_a_reserve_of_each_quota_to_urgent_mail(quota: int | None, urgent: bool, reserve: int) -> None:
    assert reserve_of(quota, urgent=urgent) == reserve


def test_settings_refuse_a_fallback_naming_no_provider(tmp_path: object) -> None:
    from course.settings import configuration_errors

    settings = Settings(provider_fallback=("nowhere",))
    assert any("COURSE_PROVIDER_FALLBACK names 'nowhere'" in error for error in configuration_errors(settings))
    limited = Settings(smtp_max_per_second=10, smtp_from_domains=(" Example.ORG. ",))
    assert limited.default_provider.max_per_second == 10 and limited.default_provider.from_domains == ("example.org",)
