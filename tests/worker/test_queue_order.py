"""The send workers read the priority queue before the bulk queue, always (not round-robin), on the
real Redis broker with the project's broker options."""

from __future__ import annotations

from pathlib import Path

from kombu import Connection, Consumer, Exchange, Producer, Queue

from worker.config import BULK_QUEUE, PRIORITY_QUEUE, celery_config
from tests.support.services import make_settings


def test_confirmations_are_taken_before_waiting_bulk_tasks(tmp_path: Path, redis_url: str) -> None:
    options = celery_config(make_settings(tmp_path, "sqlite://"), redis_url)["broker_transport_options"]
    exchange = Exchange("tasks", type="direct")
    queues = [Queue(name, exchange, routing_key=name) for name in (PRIORITY_QUEUE, BULK_QUEUE)]
    taken: list[str] = []
    with Connection(redis_url, transport_options=options) as connection:
        channel = connection.channel()
        producer = Producer(channel, exchange)
        for queue in queues:
            queue(channel).declare()
        for name in (BULK_QUEUE, BULK_QUEUE, PRIORITY_QUEUE, PRIORITY_QUEUE):
            producer.publish({"queue": name}, routing_key=name)

        def take(body: dict[str, str], message: object) -> None:
            taken.append(body["queue"])
            message.ack()  # type: ignore[attr-defined]

        with Consumer(channel, queues=queues, callbacks=[take], prefetch_count=1):
            while len(taken) < 4:
                connection.drain_events(timeout=5)
    # Round-robin (kombu's default) gives priority, bulk, priority, bulk.
    assert taken == [PRIORITY_QUEUE, PRIORITY_QUEUE, BULK_QUEUE, BULK_QUEUE]
