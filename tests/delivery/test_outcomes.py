"""The group writer's policy: groups by count and by age, retries while the database is away with
growing pauses and no new sends, gives up at its deadline, and lets real bugs through."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from course.delivery.outcomes import GroupWriter, outcome_size
from course.ledger import Outcome


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def away() -> OperationalError:
    return OperationalError("UPDATE deliveries", {}, Exception("server closed the connection unexpectedly"))


def writer_with(write, clock: FakeTime, **kwargs) -> GroupWriter:  # type: ignore[no-untyped-def]
    return GroupWriter(write=write, give_up_at=clock.now + 10, monotonic=clock.monotonic, sleep=clock.sleep, **kwargs)


def test_groups_are_written_by_count_and_by_age() -> None:
    clock = FakeTime()
    groups: list[list[int]] = []
    writer = writer_with(lambda outcome: groups.append(list(outcome.sent)), clock, group_size=3, group_seconds=0.25)
    for delivery_id in range(1, 8):
        writer.group.sent.append(delivery_id)
        assert writer.added()
        clock.now += 0.01
    assert groups == [[1, 2, 3], [4, 5, 6]]
    clock.now += 0.3
    writer.group.retry.append((8, None, "451"))  # type: ignore[arg-type]
    assert writer.added()  # 7 waited 0.31 s: the group goes out by age
    assert groups[-1] == [7]
    assert writer.flush() and writer.written == 8 and writer.statements == 3


def test_a_failed_write_is_retried_with_back_off_until_it_succeeds() -> None:
    clock = FakeTime()
    failures = iter([away(), away(), away()])
    written: list[int] = []
    results: list[str] = []

    def write(outcome: Outcome) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        written.extend(outcome.sent)

    writer = writer_with(write, clock, group_size=2, on_write=results.append)
    writer.group.sent.extend([1, 2])
    assert writer.added()
    assert written == [1, 2]
    assert clock.sleeps == [0.05, 0.1, 0.2]
    assert results == ["retried"]
    assert outcome_size(writer.group) == 0


def test_the_task_is_abandoned_at_its_deadline() -> None:
    clock = FakeTime()

    def write(outcome: Outcome) -> None:
        raise away()

    results: list[str] = []
    writer = writer_with(write, clock, group_size=1, on_write=results.append)
    writer.group.sent.append(1)
    assert writer.added() is False
    assert writer.abandoned and results == ["abandoned"]
    assert clock.now == pytest.approx(110.0)  # never slept past the deadline
    assert max(clock.sleeps) <= 2.0
    writer.group.sent.append(2)
    assert writer.added() is False  # nothing more is sent once abandoned


def test_a_bug_in_the_write_is_not_retried() -> None:
    clock = FakeTime()

    def write(outcome: Outcome) -> None:
        raise IntegrityError("UPDATE", {}, Exception("duplicate key"))

    writer = writer_with(write, clock, group_size=1)
    writer.group.sent.append(1)
    with pytest.raises(IntegrityError):
        writer.added()
    assert clock.sleeps == []
