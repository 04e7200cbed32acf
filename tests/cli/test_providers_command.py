"""`course providers`: each provider's state, limits and rate from the shared gate (a real Redis),
as a table and as JSON; `--resume` lifts a pause."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from course.cli.main import app
from course.delivery.gate import gate_from_settings
from course.settings import ProviderSettings, Settings, get_settings


@pytest.fixture
def configured(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("COURSE_PROVIDERS", json.dumps({"ses": {"host": "email-smtp.eu-west-1.amazonaws.com", "max_per_second": 14, "max_per_day": 50000}}))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_states_limits_and_rate_as_json_and_a_pause_lifted(configured: Settings) -> None:
    gate = gate_from_settings(configured)
    ses = configured.provider_settings["ses"]
    for _ in range(3):
        assert gate.acquire("ses", ses, urgent=False, max_wait=1).granted
    gate.failed("ses", "cannot connect to SMTP server email-smtp.eu-west-1.amazonaws.com:587: refused", at_once=True)
    result = CliRunner().invoke(app, ["providers", "--json"])
    assert result.exit_code == 0, result.output
    states = {state["name"]: state for state in json.loads(result.output)}
    assert states["default"]["state"] == "ok"
    assert states["ses"]["state"] == "paused" and "refused" in states["ses"]["reason"]
    assert states["ses"]["max_per_second"] == 14 and states["ses"]["max_per_day"] == 50000
    assert states["ses"]["sent_today"] == 3
    table = CliRunner().invoke(app, ["providers"], terminal_width=200)
    assert "paused until" in table.output and "14/s, 50,000/day" in table.output
    resumed = CliRunner().invoke(app, ["providers", "--resume", "ses", "--json"])
    assert {s["name"]: s["state"] for s in json.loads(resumed.output)} == {"default": "ok", "ses": "ok"}
    unknown = CliRunner().invoke(app, ["providers", "--resume", "nowhere"])
    assert unknown.exit_code == 1 and "no provider named 'nowhere'" in unknown.output
