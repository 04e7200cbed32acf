"""Campaign audiences: the pure rules, then the one SELECT over a real database (PostgreSQL and
SQLite) for every kind of audience, and that unconfirmed, unsubscribed and bounced addresses are
never in it. On PostgreSQL, every shape counted exactly at 20,000 subscribers (its speed at a
million is measured by `course bench --scenario audience`, not here)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from course.campaigns.audience import Audience, AudienceError, CourseStage, build_audience, count_audience, recipients
from course.campaigns.service import tag_subscribers
from course.models import Delivery, DeliveryState, Enrollment, EnrollmentStatus, Lesson, Subscriber, SubscriberStatus
from tests.support.pipeline_fixtures import enroll_people, make_course

NOW = datetime.fromisoformat("2026-03-05T12:00:00+00:00")


def test_build_audience_reads_form_fields_and_refuses_what_cannot_be_sent() -> None:
    audience = build_audience(tags_any="Bakers, rye  bakers", exclude_tags=["lapsed"], course="bread", course_stage="finished", min_lesson="3")
    assert audience == Audience(tags_any=("bakers", "rye"), exclude_tags=("lapsed",), course="bread", course_stage=CourseStage.FINISHED, min_lesson=3)
    assert Audience.from_json(audience.to_json()) == audience
    assert build_audience().is_everyone and build_audience().describe() == "every active subscriber"
    assert audience.describe() == "active subscribers tagged bakers or rye, who finished bread, at lesson 3 or later, not tagged lapsed"
    for fields, message in [
        ({"tags_any": "ok bad!tag"}, "invalid tag"),
        ({"tags_any": "a", "exclude_tags": "a"}, "both wanted and excluded"),
        ({"min_lesson": "3"}, "needs a course"),
        ({"course": "bread", "min_lesson": "zero"}, "not a number"),
        ({"course": "bread", "min_lesson": 0}, "between 1 and 1000"),
        ({"course": "bread", "course_stage": "halfway"}, "unknown course stage"),
        ({"tags_all": " ".join(f"t{n}" for n in range(21))}, "at most 20"),
    ]:
        with pytest.raises(AudienceError, match=message):
            build_audience(**fields)  # type: ignore[arg-type]


def _world(session: Session) -> dict[str, int]:
    """Ten readers with tags, course progress and statuses chosen so each audience differs."""
    course = make_course(session, now=NOW, slug="bread", lessons=4)
    people = enroll_people(session, course, [f"p{n}@example.org" for n in range(10)], now=NOW)
    tags = {0: ["bakers"], 1: ["bakers", "rye"], 2: ["rye"], 3: ["bakers", "lapsed"], 4: [], 5: ["bakers", "rye"], 6: ["bakers"], 7: ["bakers"], 8: ["rye"], 9: []}
    for number, names in tags.items():
        if names:
            tag_subscribers(session, f"p{number}@example.org", names)
    ids = {f"p{n}": person.id for n, person in enumerate(people)}
    # p5 never confirmed, p6 unsubscribed, p7 bounced: never in any audience.
    for name, status in [("p5", SubscriberStatus.PENDING), ("p6", SubscriberStatus.UNSUBSCRIBED), ("p7", SubscriberStatus.BOUNCED)]:
        session.execute(update(Subscriber).where(Subscriber.id == ids[name]).values(status=status))
    # p0 and p1 have had lessons 1-3 sent, p2 lesson 1; p1 finished the course; p9 is not enrolled.
    lesson_ids = dict(session.execute(select(Lesson.position, Lesson.id).where(Lesson.course_id == course.id)).all())
    for name, upto in [("p0", 3), ("p1", 3), ("p2", 1)]:
        session.execute(
            update(Delivery)
            .where(Delivery.subscriber_id == ids[name], Delivery.lesson_id.in_([lesson_ids[p] for p in range(1, upto + 1)]))
            .values(state=DeliveryState.SENT, sent_at=NOW)
        )
    session.execute(update(Enrollment).where(Enrollment.subscriber_id == ids["p1"]).values(status=EnrollmentStatus.COMPLETED))
    session.execute(text("DELETE FROM enrollments WHERE subscriber_id = :id"), {"id": ids["p9"]})
    return ids


def _reached(session: Session, audience: Audience, ids: dict[str, int]) -> set[str]:
    from course.campaigns.audience import check_audience

    names = {value: key for key, value in ids.items()}
    course_id = check_audience(session, audience)
    reached = {names[subscriber_id] for subscriber_id in session.scalars(recipients(audience, course_id))}
    assert count_audience(session, audience) == len(reached)
    return reached


def test_each_kind_of_audience_reaches_exactly_its_subscribers(db: sessionmaker[Session]) -> None:
    with db.begin() as session:
        ids = _world(session)
        everyone = {"p0", "p1", "p2", "p3", "p4", "p8", "p9"}
        assert _reached(session, Audience(), ids) == everyone
        assert _reached(session, build_audience(tags_any="bakers rye"), ids) == {"p0", "p1", "p2", "p3", "p8"}
        assert _reached(session, build_audience(tags_all="bakers rye"), ids) == {"p1"}
        assert _reached(session, build_audience(tags_any="bakers", exclude_tags="lapsed"), ids) == {"p0", "p1"}
        assert _reached(session, build_audience(exclude_tags="rye"), ids) == {"p0", "p3", "p4", "p9"}
        assert _reached(session, build_audience(course="bread"), ids) == everyone - {"p9"}
        assert _reached(session, build_audience(course="bread", course_stage="finished"), ids) == {"p1"}
        assert _reached(session, build_audience(course="bread", course_stage="active"), ids) == everyone - {"p1", "p9"}
        assert _reached(session, build_audience(course="bread", min_lesson=3), ids) == {"p0", "p1"}
        assert _reached(session, build_audience(course="bread", min_lesson=2, tags_any="rye"), ids) == {"p1"}
        for audience, message in [
            (build_audience(tags_any="nosuchtag"), "no subscriber has the tag 'nosuchtag'"),
            (build_audience(exclude_tags="gone"), "no subscriber has the tag 'gone'"),
            (build_audience(course="cake"), "no course 'cake'"),
        ]:
            with pytest.raises(AudienceError, match=message):
                count_audience(session, audience)


@pytest.mark.postgres
def test_each_audience_shape_counts_exactly_at_twenty_thousand_subscribers(pg: sessionmaker[Session]) -> None:
    """The shapes `course bench --scenario audience` times at a million, counted exactly at 20,000:
    every tenth unsubscribed; id % 3 = 0 bakers, else readers; id % 7 = 0 lapsed too. How fast they
    are is the benchmark's business (docs/performance.md), never a test's."""
    n = 20_000
    with pg.begin() as session:
        session.execute(
            text(
                "INSERT INTO subscribers (email, name, timezone, status, created_at) "
                "SELECT 'r' || n || '@example.org', '', 'UTC', CASE WHEN n % 10 = 0 THEN 'unsubscribed' ELSE 'active' END, now() "
                "FROM generate_series(1, :n) AS n"
            ),
            {"n": n},
        )
        first_id = session.scalar(text("SELECT min(id) FROM subscribers"))
        session.execute(
            text(
                "INSERT INTO subscriber_tags (subscriber_id, tag) SELECT id, CASE WHEN id % 3 = 0 THEN 'bakers' ELSE 'readers' END "
                "FROM subscribers UNION ALL SELECT id, 'lapsed' FROM subscribers WHERE id % 7 = 0"
            )
        )
    # Statistics as autovacuum keeps them, so the plans are the ones a real database would choose.
    with pg.kw["bind"].connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE subscribers"))
        connection.execute(text("VACUUM ANALYZE subscriber_tags"))
    # Row n has id first_id + n - 1 (one INSERT, one sequence): status follows n, tags follow the id.
    active_ids = [first_id + i - 1 for i in range(1, n + 1) if i % 10]
    expected = {
        "everyone": len(active_ids),
        "tag": sum(1 for i in active_ids if i % 3 == 0),
        "tag minus excluded": sum(1 for i in active_ids if i % 3 == 0 and i % 7),
        "all tags minus excluded": sum(1 for i in active_ids if i % 7),
    }
    with pg.begin() as session:
        counted = {
            label: count_audience(session, audience)
            for label, audience in [
                ("everyone", Audience()),
                ("tag", build_audience(tags_any="bakers")),
                ("tag minus excluded", build_audience(tags_any="bakers", exclude_tags="lapsed")),
                ("all tags minus excluded", build_audience(tags_any="bakers readers", exclude_tags="lapsed")),
            ]
        }
    assert counted == expected
    assert counted["everyone"] == 18_000 and 0 < counted["tag minus excluded"] < counted["tag"] < counted["all tags minus excluded"]
