"""The provider gate on a real Redis (shared by processes) and in-process: slots evenly spaced at
max_per_second, hourly quotas with the urgent reserve, pauses with back-off, connection places."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from course.delivery.gate import Gate, LocalGate, PausePolicy, RedisGate
from course.settings import ProviderSettings

POLICY = PausePolicy(pause_seconds=1.0, pause_max_seconds=4.0, failures_to_pause=3)


@pytest.fixture(params=["redis", "local"])
def gate(request: pytest.FixtureRequest) -> Iterator[Gate]:
    if request.param == "local":
        yield LocalGate(POLICY)
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    yield RedisGate(client, POLICY)
    client.close()


def test_slots_are_spaced_by_the_rate_across_callers(gate: Gate) -> None:
    limits = ProviderSettings(host="h", max_per_second=50)
    waits = [gate.acquire("p", limits, urgent=False, max_wait=5).wait for _ in range(25)]
    # 25 reservations made at once: the n-th is n/50 s away (to within the calls' own duration).
    for n, wait in enumerate(waits):
        assert n / 50 - 0.05 <= wait <= n / 50 + 0.001, (n, wait)


def test_a_slot_further_than_the_caller_can_wait_is_not_taken(gate: Gate) -> None:
    limits = ProviderSettings(host="h", max_per_second=10)
    for _ in range(5):
        assert gate.acquire("p", limits, urgent=False, max_wait=1).granted
    refused = gate.acquire("p", limits, urgent=False, max_wait=0.2)
    assert not refused.granted and refused.why == "second" and 0.3 < refused.wait <= 0.5
    assert gate.acquire("p", limits, urgent=False, max_wait=1).wait == pytest.approx(0.5, abs=0.05)  # the refusal took no slot


def test_the_hourly_quota_keeps_a_reserve_for_urgent_mail(gate: Gate) -> None:
    limits = ProviderSettings(host="h", max_per_hour=10)
    granted = sum(gate.acquire("p", limits, urgent=False, max_wait=1).granted for _ in range(12))
    assert granted == 9  # one place (2 %, at least 1) is left to urgent mail
    refused = gate.acquire("p", limits, urgent=False, max_wait=1)
    assert refused.why == "hour" and 0 < refused.wait <= 3600
    assert gate.acquire("p", limits, urgent=True, max_wait=1).granted
    assert not gate.acquire("p", limits, urgent=True, max_wait=1).granted
    assert gate.usage("p").sent_this_hour == 10


def test_failures_pause_a_provider_for_everyone_with_back_off(gate: Gate) -> None:
    limits = ProviderSettings(host="h")
    assert gate.failed("p", "421 busy", at_once=False) is None
    assert gate.failed("p", "421 busy", at_once=False) is None
    until = gate.failed("p", "421 busy", at_once=False)
    assert until is not None and 0.5 < (until - datetime.now(UTC)).total_seconds() <= 1.0
    refused = gate.acquire("p", limits, urgent=True, max_wait=1)
    assert refused.paused and 0 < refused.wait <= 1.0
    health = gate.health("p")
    assert health.paused_until is not None and health.reason == "421 busy"
    assert gate.acquire("other", limits, urgent=False, max_wait=1).granted  # other providers keep sending
    time.sleep(1.05)
    assert gate.acquire("p", limits, urgent=False, max_wait=1).granted
    second = gate.failed("p", "connection refused", at_once=True)  # the next pause is twice as long
    assert second is not None and 1.5 < (second - datetime.now(UTC)).total_seconds() <= 2.0
    gate.succeeded("p")
    assert gate.health("p").pauses == 0


def test_connection_places_are_shared_and_given_back(gate: Gate) -> None:
    assert gate.hold_connection("p", 2, "a", seconds=30)
    assert gate.hold_connection("p", 2, "b", seconds=30)
    assert gate.hold_connection("p", 2, "a", seconds=30)  # a holder renews its own place
    assert not gate.hold_connection("p", 2, "c", seconds=30)
    gate.release_connection("p", "a")
    assert gate.hold_connection("p", 2, "c", seconds=0.2)
    assert gate.usage("p").connections == 2
    time.sleep(0.25)  # a holder that died frees its place when its lease ends
    assert gate.hold_connection("p", 2, "d", seconds=30)
