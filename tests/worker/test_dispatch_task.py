"""The dispatch task's order of work: queued signups, the due mail, then the signups queued while
that ran (claiming a large send takes seconds) with their confirmations claimed at once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import worker.tasks as tasks
from course.audience.subscriptions import SignupOutcome
from course.delivery.dispatch import DispatchReport


def test_signups_queued_during_a_dispatch_are_handled_and_claimed_in_the_same_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = [3]  # signups waiting when the run starts
    arriving = [2]  # readers signing up while the first run claims a newsletter
    calls: list[str] = []

    def handle_signups(*_args: Any, **_kwargs: Any) -> Counter[SignupOutcome]:
        handled, queue[0] = queue[0], 0
        calls.append(f"signups {handled}")
        return Counter({SignupOutcome.CONFIRMATION_QUEUED: handled}) if handled else Counter()

    def dispatch_due(*_args: Any, **_kwargs: Any) -> DispatchReport:
        calls.append("dispatch")
        queue[0], arriving[0] = arriving[0], 0
        return DispatchReport(claimed=10, tasks=1)

    monkeypatch.setattr(tasks, "handle_signups", handle_signups)
    monkeypatch.setattr(tasks, "dispatch_due", dispatch_due)
    monkeypatch.setattr(tasks, "session_factory", lambda _settings: None)
    assert tasks.dispatch() == {"claimed": 20, "tasks": 2}
    assert calls == ["signups 3", "dispatch", "signups 2", "dispatch"]

    calls.clear()
    assert tasks.dispatch() == {"claimed": 10, "tasks": 1}  # nothing came in meanwhile: one round
    assert calls == ["signups 0", "dispatch", "signups 0"]
