"""The demo clock saved next to its database: commands run beside `course run` read the demo's
calendar, a restarted demo goes on with the calendar its rows were scheduled in, and nothing else
(another database, a broken file, explicit clock settings) is affected."""

from __future__ import annotations

from pathlib import Path

import pytest

from course.clock import (
    FastClock,
    SystemClock,
    clock_from_settings,
    continue_calendar,
    forget_demo_clock,
    load_demo_clock,
    save_demo_clock,
)
from course.settings import Settings


def settings_in(var: Path, **values: object) -> Settings:
    return Settings(var_dir=var, mail_dir=var / "mail", **values)  # type: ignore[arg-type]


def test_a_command_beside_the_demo_reads_the_demo_calendar(tmp_path: Path) -> None:
    demo = settings_in(tmp_path / "var")
    save_demo_clock(demo, FastClock(origin=1_700_000_000.0, speed=8640.0))
    beside = settings_in(tmp_path / "var")  # a second process: no COURSE_CLOCK_* in its environment
    assert clock_from_settings(beside) == FastClock(origin=1_700_000_000.0, speed=8640.0)
    assert forget_demo_clock(beside) is True
    assert isinstance(clock_from_settings(beside), SystemClock)
    assert forget_demo_clock(beside) is False


def test_the_saved_clock_belongs_to_one_database(tmp_path: Path) -> None:
    save_demo_clock(settings_in(tmp_path / "var"), FastClock(origin=1.0, speed=2.0))
    other_database = settings_in(tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'other.db'}")
    assert load_demo_clock(other_database) is None
    assert isinstance(clock_from_settings(other_database), SystemClock)


def test_explicit_clock_settings_win_over_the_saved_clock(tmp_path: Path) -> None:
    save_demo_clock(settings_in(tmp_path / "var"), FastClock(origin=1.0, speed=2.0))
    explicit = settings_in(tmp_path / "var", clock_speed=10.0, clock_origin=5.0)
    assert clock_from_settings(explicit) == FastClock(origin=5.0, speed=10.0)


@pytest.mark.parametrize("content", ["", "{", '{"origin": "soon"}', "[]"])
def test_a_broken_clock_file_is_ignored(tmp_path: Path, content: str) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "demo-clock.json").write_text(content)
    assert load_demo_clock(settings_in(var)) is None


def test_a_new_speed_continues_the_calendar_where_it_is() -> None:
    previous = FastClock(origin=1_000.0, speed=8640.0)
    wall = 1_100.0
    calendar_then = 1_000.0 + 100.0 * 8640.0
    faster = continue_calendar(previous, 17280.0, wall=wall)
    assert faster.speed == 17280.0
    assert faster.origin + (wall - faster.origin) * faster.speed == pytest.approx(calendar_then)
    assert continue_calendar(previous, 8640.0, wall=wall) is previous
