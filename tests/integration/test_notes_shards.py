"""Question notes merged over shards keep every note the oracle keeps, at the edge of the
``NOTES_KEEP`` window (#16): a note among a viewer's newest ``NOTES_KEEP`` may have, in its own
shard, up to ``QUESTION_NOTES_PER_DAY - 1`` newer notes that lost their day's cap to another
shard's earlier questions; a shard keeping only ``NOTES_KEEP`` dropped it, so the merge ended
with an older note in its place. Built so exactly that happens: the viewer bought one product in
each of two shards; on day 0 four questions about product B come first, then x about A, then
four more about A; for nine days five about B early and five about A late; on day 10 one each.
The oracle keeps x (47 notes are newer); A's shard has 50 newer notes of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import events as ev
from services.counters.oracle import Oracle
from services.counters.store import CounterStore
from services.notifier.proof import ProofReader
from tests.integration.test_counters_qa import ask, privacy
from tests.integration.test_counters_store import purchase
from tests.support.stores import StoreUnderTest

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


def two_products(store: StoreUnderTest) -> tuple[str, str]:
    """Two products in different shards (any two with one shard)."""
    candidates = [f"prod-{i}" for i in range(64)]
    a = candidates[0]
    b = next(p for p in candidates[1:] if store.layout.shard_of(p) != store.layout.shard_of(a))
    return a, b


async def test_notes_at_the_edge_of_the_window_are_kept_on_every_layout(
    store: StoreUnderTest,
) -> None:
    a, b = two_products(store) if store.layout.sharded else ("prod-a", "prod-b")
    start = DAY0 - timedelta(days=2)
    events: list[ev.Event] = [
        privacy("viewer", True, start),
        purchase("o-a", "viewer", a, start),
        purchase("o-b", "viewer", b, start),
    ]

    def at(day: int, minute: int) -> datetime:
        return DAY0 + timedelta(days=day, minutes=minute)

    events += [ask(f"d0-b{i}", "asker", b, at(0, i)) for i in range(4)]
    events.append(ask("x", "asker", a, at(0, 60)))
    events += [ask(f"d0-a{i}", "asker", a, at(0, 120 + i)) for i in range(4)]
    for day in range(1, 10):
        events += [ask(f"d{day}-b{i}", "asker", b, at(day, i)) for i in range(5)]
        events += [ask(f"d{day}-a{i}", "asker", a, at(day, 120 + i)) for i in range(5)]
    events += [ask("d10-b", "asker", b, at(10, 0)), ask("d10-a", "asker", a, at(10, 120))]
    expected = Oracle(events).notes("viewer")
    assert "x" in expected and len(expected) == 50  # the edge this test is about

    await CounterStore(store.redis, store.namespace).apply(events)
    notes = await ProofReader(store.redis, store.namespace, shards=store.layout.shards).notes(
        "viewer"
    )
    assert [n.question_id for n in notes] == expected
