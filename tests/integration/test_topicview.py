"""The topic view (how catalog, orders and social rebuild their state) against the real broker:
"caught up" and "synced" must mean that every record written before was applied (records sent
in large batches and handed over in small slices here)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts.topics import Topic
from socialproof import topicview
from socialproof.kafka import EventPublisher, ensure_topics
from socialproof.settings import Settings
from socialproof.topicview import Record, TopicView, ViewNotReady
from tests.support.services import run_async


@pytest.fixture
def topic(settings: Settings) -> Topic:
    t = Topic(
        name=f"test.view.{uuid.uuid4().hex[:8]}",
        key="n",
        key_of=lambda e: "",
        value_types=(),
        writer="tests",
        partitions=3,
    )
    ensure_topics(settings, [t])
    return t


async def write(publisher: EventPublisher, topic: Topic, start: int, count: int) -> None:
    # all in flight at once, so the producer packs them into multi-record batches
    await asyncio.gather(
        *(
            publisher.publish_raw(topic.name, key=str(n).encode(), value=str(n).encode())
            for n in range(start, start + count)
        )
    )


def test_caught_up_and_synced_views_hold_every_record_written_before(
    settings: Settings, topic: Topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hand records over in small slices, so that a fetched batch is applied in many steps and a
    # view that called itself caught up too early would be seen missing records.
    monkeypatch.setattr(topicview, "POLL_BATCH", 7)

    async def scenario() -> None:
        publisher = EventPublisher(settings, client_id="tests-view")
        seen: set[int] = set()

        def apply(record: Record) -> None:
            assert record.value is not None
            seen.add(int(record.value))

        try:
            # Given 3,000 records in batches on three partitions
            await write(publisher, topic, 0, 3000)
            # When a view starts, it is not ready until it replayed them
            view = TopicView(settings, [topic], apply, name="tests")
            await view.start()
            with pytest.raises(ViewNotReady):
                await view.check()
            assert await view.wait_until(lambda: view.caught_up, 20)
            # Then, the moment it says it caught up, every record was applied
            assert len(seen) == 3000
            await view.check()
            # When another producer writes 500 more, sync() returns only once all are applied
            await write(publisher, topic, 3000, 500)
            assert await view.sync(5)
            assert len(seen) == 3500
            # And a single write is visible once wait_delivered returns
            delivered = await publisher.publish_raw(topic.name, key=b"k", value=b"9999")
            assert await view.wait_delivered(delivered, 5)
            assert 9999 in seen
            await view.stop()
        finally:
            publisher.close()

    run_async(scenario)


def test_an_empty_topic_is_caught_up_at_once(settings: Settings, topic: Topic) -> None:
    async def scenario() -> None:
        view = TopicView(settings, [topic], lambda r: None, name="tests")
        await view.start()
        assert await view.wait_until(lambda: view.caught_up, 10)
        assert await view.sync(2)
        await view.stop()

    run_async(scenario)
