"""Badge experiments in the counter store (issue #18), against a real Redis.

A generated world (``tests/support/experiments.py``: three experiments and the plain badge,
visitors, logged-in viewers, purchases with and without a visitor id, windows hit exactly at their
ends and missed by a millisecond, equal impression times, a visitor in two variants, partial and
full refunds, cancellations, erasures of a viewer whose impressions explained others' purchases
and of a buyer, events of both after their erasure, re-sent beacons, impressions arriving after
the purchases they explain) is applied in order, shuffled with duplicates, split across two
concurrent appliers and replayed in one go into a fresh namespace: every experiment key of all
four is what the reference model (``services/counters/experiment_oracle.py``) says, and the four
hold the same state, counters included. The rules one by one (the window's ends, the latest
impression, either identity, a late impression, refunds and cancellations, erasure) are checked
on small cases by hand, each also applied in reverse order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from contracts import events as ev
from services.counters.experiment_oracle import ExperimentOracle, Figures
from services.counters.store import CounterStore
from services.notifier import experiment_results as results
from socialproof.settings import Settings
from tests.support.experiments import (
    MS,
    World,
    at,
    expected_keys,
    experiment_keys,
    generated_world,
    oracle_errors,
)
from tests.support.referrals import dump, mentions
from tests.support.stores import StoreUnderTest

XA = "exp-a"


@pytest.fixture
async def aredis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def spare(redis_client: redis_sync.Redis) -> Iterator[list[str]]:
    """Extra namespaces a test makes beside ``namespace``; removed after."""
    made: list[str] = []
    yield made
    for ns in made:
        keys = list(redis_client.scan_iter(f"{ns}:*", count=1000))
        if keys:
            redis_client.delete(*keys)


def counter_store(aredis: aioredis.Redis, ns: str) -> CounterStore:
    return CounterStore(aredis, ns, coupon_secret="test-coupon-secret")


async def apply_in_chunks(s: CounterStore, events: list[ev.Event], size: int) -> None:
    for start in range(0, len(events), size):
        await s.apply(events[start : start + size])


def figures(client: redis_sync.Redis, ns: str, experiment: str, variant: str) -> Figures:
    """A variant's figures read from the keys as the results page does."""
    funnel = client.hgetall(f"{ns}:xr:{experiment}")

    def total(kind: str) -> int:
        return sum(
            int(n)
            for f, n in funnel.items()
            if f.startswith(f"{variant}|") and f.endswith(f"|{kind}")
        )

    return Figures(
        visitors=client.zcard(f"{ns}:xvf:{experiment}|{variant}"),
        impressions=total("imp"),
        clicks=total("clk"),
        dismissals=total("dis"),
        purchases=total("pur"),
        conversions=client.zcard(f"{ns}:xcv:{experiment}|{variant}"),
    )


# --- against the oracle -------------------------------------------------------------------------


async def test_every_experiment_figure_equals_the_oracle_in_order_shuffled_concurrently_replayed(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    # Given a generated world with every kind of interaction, purchase and retraction
    events, facts = generated_world()
    oracle = ExperimentOracle(events)
    # (one where the rules matter: attributions in every experiment and the plain badge, the
    # window's ends, lines that lost or moved their attribution with the erased viewer)
    assert {a.experiment for a in oracle.attributions.values()} == {"_", XA, "exp-b", "exp-c"}
    at_start, at_end, past_end, before_start = facts["boundary"]
    attributed = {(o, e) for o, _, e in oracle.attributions}
    assert {(at_start, "exp-b"), (at_end, "exp-b")} <= attributed
    assert not {o for o, _ in attributed} & {past_end, before_start}
    moved = facts["moved"]
    assert oracle.attributions[moved].visitor and len(facts["resting"]) > 1
    assert all(oracle.attributions.get(k) is None for k in facts["resting"] if k != moved)
    assert len(oracle.variants(XA)) == 2 and oracle.figures("_", "badge").conversions > 3
    shuffled_ns, concurrent_ns, replay_ns = namespace + "s", namespace + "c", namespace + "r"
    spare += [shuffled_ns, concurrent_ns, replay_ns]
    # When one store gets them in the stream's order, one shuffled with 150 duplicates, two
    # concurrent appliers split the shuffled list between them, and a replay takes all at once
    rng = random.Random(7)
    shuffled = events + rng.sample(events, 150)
    rng.shuffle(shuffled)
    await apply_in_chunks(counter_store(aredis, namespace), events, 60)
    await apply_in_chunks(counter_store(aredis, shuffled_ns), shuffled, 37)
    await asyncio.gather(
        *(
            apply_in_chunks(counter_store(aredis, concurrent_ns), shuffled[i::2], 23)
            for i in range(2)
        )
    )
    await counter_store(aredis, replay_ns).apply(sorted(events, key=lambda e: e.occurred_at))
    # Then every experiment key of all four is the oracle's
    for ns in (namespace, shuffled_ns, concurrent_ns, replay_ns):
        assert oracle_errors(redis_client, ns, oracle) == [], ns
    # And every variant's figures, read as the results page reads them
    for experiment in oracle.experiments:
        for variant in oracle.variants(experiment):
            got = figures(redis_client, namespace, experiment, variant)
            assert got == oracle.figures(experiment, variant), (experiment, variant)
    # And all four hold exactly the same state, the counters' too
    in_order = dump(redis_client, namespace)
    for ns in (shuffled_ns, concurrent_ns, replay_ns):
        assert dump(redis_client, ns) == in_order, ns
    # And the erased users are in no key
    for user in facts["erased"]:
        assert mentions(in_order, user) == []
    # And everything applied again changes nothing
    await apply_in_chunks(counter_store(aredis, shuffled_ns), events, 500)
    assert dump(redis_client, shuffled_ns) == in_order


async def test_the_results_read_merges_the_shards_into_the_oracles_figures_on_every_layout(
    store: StoreUnderTest,  # noqa: F811
) -> None:
    # Given the generated world through the real counter store, on one shard, four on one Redis
    # and twelve on a Redis Cluster (each product shard keeps its own xr/xvf/xcv)
    events, _ = generated_world()
    oracle = ExperimentOracle(events)
    expected = expected_keys(oracle)
    await apply_in_chunks(counter_store(store.redis, store.namespace), events, 60)
    layout, merged = store.layout, 0
    for experiment in sorted(oracle.experiments):
        variants = sorted(oracle.variants(experiment))
        firsts = {v: oracle.first_seen(experiment, v) for v in variants}
        converted = {v: oracle.converted(experiment, v) for v in variants}
        # (days of the series on first times and a millisecond before them: the ends exactly)
        times = sorted(
            {ms for v in variants for ms in (*firsts[v].values(), *converted[v].values())}
        )
        cuts = sorted({t - d for t in times[:: max(1, len(times) // 6)] for d in (0, 1)})
        series = [results.Point(f"d{i}", cut) for i, cut in enumerate(cuts)]
        series.append(results.Point("now", None))
        # When the results page reads the experiment
        snapshot = await results.read(store.redis, layout, experiment, variants, series)
        # Then the funnel is the oracle's per variant and product
        want_funnel = expected.get(f"xr:{experiment}", {})
        assert results.parse_funnel(snapshot.funnel) == results.parse_funnel(want_funnel)
        for v in variants:
            figures_ = oracle.figures(experiment, v)
            # and visitors and conversions count each visitor once, whatever the shards
            assert (snapshot.visitors[v], snapshot.conversions[v]) == (
                figures_.visitors,
                figures_.conversions,
            ), (experiment, v)
            # and every day of the series counts them by their first time over all shards
            for point, day in zip(series, snapshot.series, strict=True):
                until = point.until_ms if point.until_ms is not None else float("inf")
                assert day[v] == (
                    sum(1 for ms in firsts[v].values() if ms <= until),
                    sum(1 for ms in converted[v].values() if ms <= until),
                ), (experiment, v, point)
            if layout.sharded:
                merged += _in_several_shards(store, experiment, v)
    # (sharded: visitors who saw products of several shards, so the union and the MIN matter)
    assert merged > 0 or not layout.sharded


def _in_several_shards(
    store: StoreUnderTest,  # noqa: F811
    experiment: str,
    variant: str,
) -> int:
    """Visitors in the xvf of two product shards or more, with different first times."""
    times: dict[str, set[float]] = {}
    for prefix in store.layout.product_prefixes:
        key = f"{prefix}:xvf:{experiment}|{variant}"
        for visitor, ms in store.sync.zrange(key, 0, -1, withscores=True):
            times.setdefault(visitor, set()).add(ms)
    return sum(1 for seen in times.values() if len(seen) > 1)


# --- the rules one by one -----------------------------------------------------------------------


class Case:
    """A small hand-written case: events applied to a store, the oracle of all of them so far."""

    def __init__(self, aredis: aioredis.Redis, client: redis_sync.Redis, ns: str) -> None:
        self.aredis, self.client, self.ns = aredis, client, ns
        self.world = World(1)
        self.events: list[ev.Event] = []

    async def apply(self, *events: ev.Event) -> None:
        self.events += events
        await counter_store(self.aredis, self.ns).apply(list(events))
        assert oracle_errors(self.client, self.ns, ExperimentOracle(self.events)) == []

    def attributed(self, order: str, product: str) -> dict[str, str]:
        return self.client.hgetall(f"{self.ns}:xa:{order}|{product}")

    def figures(self, experiment: str, variant: str) -> Figures:
        return figures(self.client, self.ns, experiment, variant)

    def zmap(self, key: str) -> dict[str, int]:
        return {
            m: int(s) for m, s in self.client.zrange(f"{self.ns}:{key}", 0, -1, withscores=True)
        }

    async def same_in_reverse(self, spare: list[str]) -> None:
        """The events one by one in reverse order end in the same state."""
        reverse = self.ns + "v"
        spare.append(reverse)
        for event in reversed(self.events):
            await counter_store(self.aredis, reverse).apply([event])
        assert dump(self.client, reverse) == dump(self.client, self.ns)


def ms(hours: float) -> int:
    return int(at(hours).timestamp() * 1000)


async def test_a_kept_line_is_attributed_within_the_window_both_ends_included_to_the_latest_view(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    case = Case(aredis, redis_client, namespace)
    w = case.world
    # Given Vera's impression of p in exp-a (control, window 2 h) and a plain badge (no window)
    await case.apply(
        w.view("visitor-vera", "p", at(0), XA, "control", window_h=2),
        w.view("visitor-vera", "p", at(0), window_h=None),
    )
    # When purchases carrying her visitor id are made at, around and after the window's ends
    await case.apply(
        w.purchase("o-start", "ann", ["p"], at(0), "visitor-vera"),
        w.purchase("o-end", "bob", ["p"], at(2), "visitor-vera"),
        w.purchase("o-past", "cid", ["p"], at(2) + MS, "visitor-vera"),
        w.purchase("o-before", "dan", ["p"], at(0) - MS, "visitor-vera"),
        w.purchase("o-plain", "eve", ["p"], at(24), "visitor-vera"),
    )
    # Then the ends count, a millisecond outside does not; the plain badge's window is 24 h
    both = {XA: "control|visitor-vera", "_": "badge|visitor-vera"}
    assert case.attributed("o-start", "p") == both
    assert case.attributed("o-end", "p") == both
    assert case.attributed("o-past", "p") == {"_": "badge|visitor-vera"}
    assert case.attributed("o-before", "p") == {}
    assert case.attributed("o-plain", "p") == {"_": "badge|visitor-vera"}
    assert case.figures(XA, "control") == Figures(1, 1, 0, 0, 2, 1)
    assert case.zmap(f"xcv:{XA}|control") == {"visitor-vera": ms(0)}
    assert case.zmap(f"xvf:{XA}|control") == {"visitor-vera": ms(0)}
    # When the buyer's own (viewer) impression of another variant comes later than hers, and two
    # impressions at the same ms tie on another line (the member, event id last, decides)
    view_ann = w.view("visitor-ann1", "p", at(0.5), XA, "friends", viewer="ann", window_h=2)
    await case.apply(
        view_ann,
        w.purchase("o-ann", "ann", ["p"], at(1)),  # no visitor id: her viewer identity
        w.view("visitor-tie", "q", at(3), XA, "control", window_h=2),
        w.view("visitor-tie", "q", at(3), XA, "friends", window_h=2),
        w.purchase("o-tie", "fay", ["q"], at(3.5), "visitor-tie"),
    )
    # Then the latest one names the variant and the visitor credited
    assert case.attributed("o-start", "p")[XA] == "control|visitor-vera"  # hers came before
    assert case.attributed("o-ann", "p")[XA] == "friends|visitor-ann1"
    assert case.attributed("o-tie", "q")[XA] in ("control|visitor-tie", "friends|visitor-tie")
    await case.same_in_reverse(spare)


async def test_a_late_impression_attributes_earlier_purchases_and_refunds_retract(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    case = Case(aredis, redis_client, namespace)
    w = case.world
    # Given purchases by Ann (logged in; one with her visitor id) before any impression arrived
    await case.apply(
        w.purchase("o1", "ann", ["p", "q"], at(1)),
        w.purchase("o2", "ann", ["p"], at(3), "visitor-ann1"),
        w.purchase("o3", "ann", ["p"], at(30)),
    )
    assert case.figures(XA, "friends") == Figures(0, 0, 0, 0, 0, 0)
    # When her impression (as viewer, on another device) and a click arrive late
    await case.apply(
        w.view("visitor-ann2", "p", at(0), XA, "friends", viewer="ann", window_h=24),
        w.click("visitor-ann2", "p", at(0), XA, "friends", viewer="ann", window_h=24),
    )
    # Then the purchases in its window count for friends, credited to that device's visitor
    assert case.attributed("o1", "p") == {XA: "friends|visitor-ann2"}
    assert case.attributed("o2", "p") == {XA: "friends|visitor-ann2"}
    assert case.attributed("o1", "q") == {} and case.attributed("o3", "p") == {}
    assert case.figures(XA, "friends") == Figures(1, 1, 1, 0, 2, 1)
    assert case.zmap(f"xcv:{XA}|friends") == {"visitor-ann2": ms(1)}
    # When the first is refunded in part, it still counts; refunded in full, it goes and the
    # conversion moves to her next purchase
    await case.apply(w.refund("o1", "ann", "p", 1, at(5)))
    assert case.figures(XA, "friends").purchases == 2
    await case.apply(w.refund("o1", "ann", "p", 2, at(6)))  # another refund: 3 of 2 back
    assert case.attributed("o1", "p") == {}
    assert case.figures(XA, "friends") == Figures(1, 1, 1, 0, 1, 1)
    assert case.zmap(f"xcv:{XA}|friends") == {"visitor-ann2": ms(3)}
    # When the other is cancelled, she converted no more (but was a visitor)
    await case.apply(w.cancel("o2", "ann", at(7)))
    assert case.figures(XA, "friends") == Figures(1, 1, 1, 0, 0, 0)
    assert not redis_client.exists(
        f"{namespace}:xcv:{XA}|friends", f"{namespace}:xvl:{XA}|visitor-ann2"
    )
    await case.same_in_reverse(spare)


async def test_erasure_counts_a_viewer_out_and_their_purchases_and_later_events_count_nothing(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    case = Case(aredis, redis_client, namespace)
    w = case.world
    # Given a shared device: Vera logged in saw p (friends) at 2 h; before, anonymous, at 1 h;
    # Zed, on the same device, bought p; Vera bought it too, and saw q only logged in
    await case.apply(
        w.view("visitor-home", "p", at(1), XA, "friends", window_h=24),
        w.view("visitor-home", "p", at(2), XA, "friends", viewer="vera", window_h=24),
        w.click("visitor-home", "p", at(2), XA, "friends", viewer="vera", window_h=24),
        w.view("visitor-home", "q", at(2), XA, "control", viewer="vera", window_h=24),
        w.purchase("o-zed", "zed", ["p"], at(3), "visitor-home"),
        w.purchase("o-vera", "vera", ["q"], at(4)),
    )
    assert case.attributed("o-zed", "p") == {XA: "friends|visitor-home"}
    assert redis_client.zscore(
        f"{namespace}:xim:v:visitor-home|p",
        f"{XA}|friends|visitor-home|86400|" + str(case.events[1].event_id),
    ) == ms(2)
    assert case.figures(XA, "control") == Figures(1, 1, 0, 0, 1, 1)
    # When Vera is erased
    await case.apply(w.erase("vera", at(10)))
    # Then her impressions and click are out: Zed's purchase rests on the anonymous one, the
    # control variant lost its only visitor and her purchase
    assert case.figures(XA, "friends") == Figures(1, 1, 0, 0, 1, 1)
    assert case.figures(XA, "control") == Figures(0, 0, 0, 0, 0, 0)
    assert case.zmap(f"xvf:{XA}|friends") == {"visitor-home": ms(1)}
    assert case.attributed("o-zed", "p") == {XA: "friends|visitor-home"}
    assert case.zmap("xim:v:visitor-home|p") == {
        f"{XA}|friends|visitor-home|86400|{case.events[0].event_id}": ms(1)
    }
    # When her events come again or after the erasure (as viewer and as buyer)
    await case.apply(
        *case.events[1:4],
        w.view("visitor-home", "p", at(11), XA, "friends", viewer="vera", window_h=24),
        w.purchase("o-vera2", "vera", ["p"], at(12), "visitor-home"),
    )
    # Then nothing counts, and nothing names her
    assert case.figures(XA, "friends") == Figures(1, 1, 0, 0, 1, 1)
    assert mentions(dump(redis_client, namespace), "vera") == []
    # When Zed, the buyer, is erased too, his purchase leaves the figures and the visitor index
    await case.apply(w.erase("zed", at(13)))
    assert case.figures(XA, "friends") == Figures(1, 1, 0, 0, 0, 0)
    assert experiment_keys(redis_client, namespace).get("xvo:visitor-home|p") is None
    await case.same_in_reverse(spare)
