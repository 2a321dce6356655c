"""Referral attribution and share-to-unlock rewards in the counter store, against a real Redis.

A generated shop (``tests/support/referrals.py``: shares with links, referred purchases through
known, unknown and the buyer's own links, refunds, cancellations, four promotions by product and
category with caps, a buyer reward, a changed definition, an early end and a category change,
coupon redemptions, erasures of a sharer and a buyer) is applied in order, shuffled with
duplicates, and split across two concurrent appliers: all three hold the same state, and it is
the reference model's (``services/counters/referral_oracle.py``). Then the outbox: one entry per
reward transition, valid contract events, none added when the same events come again; and a
replay into a fresh namespace (no outbox) or a shadow computes the same rewards silently. The
rules one by one (first touch, self-referral, a link arriving late, the cap's ranking, a redeemed
reward pinned, erasure, promotion changes and categories) are checked on small cases by hand,
besides the oracle.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta

import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from contracts import events as ev
from contracts import namespaces
from contracts.layout import outbox_prefix
from contracts.views import Keys
from services.counters.referral_oracle import ReferralOracle, coupon_code, reward_id
from services.notifier.promotions import PromotionReader
from services.notifier.proof import ProofReader
from socialproof.settings import Settings
from tests.support.referrals import (
    AT,
    SECRET,
    Shop,
    apply_in_chunks,
    dump,
    generated_shop,
    holding,
    mentions,
    oracle_errors,
    outbox_errors,
    rewards,
    zmap,
)
from tests.support.referrals import (
    store as counter_store,
)
from tests.support.stores import StoreUnderTest


@pytest.fixture
async def aredis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def spare(redis_client: redis_sync.Redis, namespace: str) -> Iterator[list[str]]:
    """Extra namespaces (and pointers) a test makes beside ``namespace``; removed after."""
    made: list[str] = []
    yield made
    for ns in made:
        keys = list(redis_client.scan_iter(f"{ns}:*", count=1000))
        keys.append(namespaces.pointer_key(ns))
        redis_client.delete(*keys)


# --- against the oracle -------------------------------------------------------------------------


async def test_attribution_and_rewards_equal_the_oracle_in_order_shuffled_and_concurrently(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    # Given a generated shop with every kind of referral event
    events, facts = generated_shop()
    oracle = ReferralOracle(events, SECRET)
    held = oracle.rewards()
    # (a shop where the rules matter: rewards of every kind, a cap that leaves sharers out,
    # a redeemed reward whose buyers were all cancelled, erased users who had credits)
    assert {(r.role, r.status) for r in held.values()} == {
        ("sharer", "earned"),
        ("sharer", "redeemed"),
        ("buyer", "earned"),
        ("buyer", "redeemed"),
    }
    assert len(oracle.qualified("promo-b")) > 2
    pinned = facts["pinned"]
    assert held[pinned.id].status == "redeemed"
    assert oracle.progress(pinned.promotion).get(pinned.user, 0) < 2
    shuffled_ns, concurrent_ns = namespace + "s", namespace + "c"
    spare += [shuffled_ns, concurrent_ns]
    # When one store gets them in order, one shuffled with 150 duplicates, and two concurrent
    # appliers split the shuffled list between them
    rng = random.Random(11)
    shuffled = events + rng.sample(events, 150)
    rng.shuffle(shuffled)
    await apply_in_chunks(counter_store(aredis, namespace), events, 60)
    await apply_in_chunks(counter_store(aredis, shuffled_ns), shuffled, 37)
    halves = [shuffled[i::2] for i in range(2)]
    await asyncio.gather(
        *(apply_in_chunks(counter_store(aredis, concurrent_ns), half, 23) for half in halves)
    )
    # Then all three equal the oracle
    for ns in (namespace, shuffled_ns, concurrent_ns):
        assert oracle_errors(redis_client, ns, oracle, facts["users"]) == [], ns
    # And hold exactly the same state (but the history of rewards withdrawn on the way)
    in_order = dump(redis_client, namespace)
    assert dump(redis_client, shuffled_ns) == in_order
    assert dump(redis_client, concurrent_ns) == in_order
    # And a reward the store has beyond the oracle's is a withdrawn one
    in_order_rewards = rewards(redis_client, namespace)
    assert {r["status"] for rid, r in in_order_rewards.items() if rid not in held} == {"withdrawn"}
    # And the erased users left no trace in attribution, rewards or their own keys
    for user in facts["erased"]:
        assert not list(redis_client.scan_iter(f"{namespace}:user:{user}:*"))
        assert not redis_client.exists(f"{namespace}:rewards:{user}", f"{namespace}:credits:{user}")
        assert all(r["u"] != user for r in in_order_rewards.values())
        assert mentions(in_order, user) == []
    # And the redemption of no reward waits, the unknown links' orders too
    assert redis_client.hgetall(f"{namespace}:redeemwait") == {"SP-0123456789ABCDEF": "u29"}
    assert any(k.startswith("linkwait:") for k in in_order)
    # And everything applied again changes nothing
    await apply_in_chunks(counter_store(aredis, shuffled_ns), events, 500)
    assert dump(redis_client, shuffled_ns) == in_order


# --- every layout -------------------------------------------------------------------------------


async def test_on_every_layout_the_notifier_reads_the_oracles_progress_rewards_and_sharers(
    store: StoreUnderTest,  # noqa: F811
) -> None:
    # Given the generated shop through a live worker's store (it emits), on one shard, four on one
    # Redis and twelve on a Redis Cluster (referrals and rewards in the referrals shard)
    events, facts = generated_shop()
    oracle = ReferralOracle(events, SECRET)
    # (and a sharer's two credited buyers made her friends, one sharing purchases with friends:
    # user facts, replicated into every shard, that progress reads beside the referrals)
    pid, sharer = max(
        ((pid, s) for pid in oracle.promotions for s in oracle.progress(pid)),
        key=lambda ps: (oracle.progress(ps[0])[ps[1]], ps),
    )
    promotion = oracle.promotions[pid]
    credited = sorted(
        b
        for (p, b), c in oracle.credits.items()
        if c.sharer == sharer
        and oracle.in_scope(promotion, p)
        and promotion.start <= c.ms < promotion.end
        and b not in facts["erased"]
    )
    shop = Shop(99)
    for buyer, shares, name in zip(credited[:2], (True, False), ("Ana", "Bea"), strict=True):
        events += [
            shop.event(ev.FriendshipAdded, {"user_id": sharer, "friend_id": buyer}, AT),
            shop.event(ev.UserProfileUpdated, {"user_id": buyer, "first_name": name}, AT),
            shop.event(
                ev.PrivacySettingsChanged,
                {
                    "user_id": buyer,
                    "share_purchases_with_friends": shares,
                    "show_in_activity_feed": True,
                },
                AT,
            ),
        ]
    live = counter_store(store.redis, store.namespace, live=True)
    await apply_in_chunks(live, events, 60)
    layout = store.layout
    referrals = layout.referrals_prefix
    # Then the referrals shard holds the oracle's attribution and rewards
    assert oracle_errors(store.sync, referrals, oracle, facts["users"]) == []
    # And the outbox is beside it (on a cluster under the referrals tag): one entry a transition
    outbox = Keys(outbox_prefix(store.namespace, store.cluster)).rewards_outbox
    assert store.sync.xlen(outbox) > 0
    assert outbox_errors(store.sync, referrals, outbox) == []
    # And the notifier reads every sharer's progress and rewards as the oracle has them
    promotions = PromotionReader(ProofReader(store.redis, store.namespace, shards=layout.shards))
    ids = sorted(oracle.promotions)
    held = oracle.rewards()
    now_ms = int((AT + timedelta(days=6)).timestamp() * 1000)
    for user in facts["users"]:
        for pid, got in zip(ids, await promotions.progress_many(ids, user, now_ms), strict=True):
            assert got is not None
            assert got.buyers == oracle.progress(pid).get(user, 0), (pid, user)
            holding = {(r.reward_id, r.status) for r in got.rewards if r.status != "withdrawn"}
            assert holding == {
                (rid, r.status) for rid, r in held.items() if (r.promotion, r.user) == (pid, user)
            }, (pid, user)
    assert await promotions.progress("no-such-promotion", facts["users"][0]) is None
    # and names the credited friend who shares purchases with friends, only her
    named = await promotions.progress(pid, sharer, now_ms)
    assert named is not None and named.named_buyers == ["Ana"]
    # And every product's top sharers, and its active promotions (its own and its category's)
    in_force = 0
    for p in facts["products"]:
        sharers = await promotions.sharers(p, limit=3)
        ranked = sorted(oracle.sharers(p).items(), key=lambda item: (-item[1], item[0]))
        assert [(s.user_id, s.buyers) for s in sharers.sharers] == ranked[:3], p
        assert (sharers.sharers_total, sharers.credited_buyers) == (
            len(ranked),
            len(oracle.via(p)),
        )
        active = await promotions.product_promotions(p, now_ms)
        in_force += len(active)
        assert {a.id for a in active} == {
            pid
            for pid, promotion in oracle.promotions.items()
            if oracle.in_scope(promotion, p) and promotion.start <= now_ms < promotion.end
        }, p
    # (a shop where it shows: credited sharers, rewards and promotions in force)
    assert held and any(oracle.sharers(p) for p in facts["products"]) and in_force


# --- the outbox ---------------------------------------------------------------------------------


async def test_the_outbox_has_one_entry_per_transition_and_none_when_the_events_come_again(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    # Given a live worker's store (it writes the namespace readers serve: it emits)
    events, facts = generated_shop(seed=6)
    outbox = f"{namespace}:rewards:outbox"
    # When it applies the shop in order
    await apply_in_chunks(counter_store(aredis, namespace, live=True), events, 60)
    # Then every reward transition is in the outbox exactly once, as valid contract events
    entries = redis_client.xrange(outbox)
    assert outbox_errors(redis_client, namespace, outbox) == []
    reasons = {f.get("reason") for _, f in entries if f["type"] == "withdrawn"}
    assert {"refunded", "erased"} <= reasons
    # (the erased sharer's reward among them, their user id only there, as the contract needs)
    assert any(f["u"] == facts["erased"][0] and f.get("reason") == "erased" for _, f in entries)
    # When the same events come again, shuffled with duplicates, and twice concurrently
    again = events + random.Random(3).sample(events, 100)
    random.Random(4).shuffle(again)
    await asyncio.gather(
        *(apply_in_chunks(counter_store(aredis, namespace, live=True), again, n) for n in (41, 97))
    )
    # Then nothing more is emitted
    assert redis_client.xrange(outbox) == entries
    # And two live workers splitting a shuffled stream emit one entry per transition too
    other = namespace + "w"
    spare.append(other)
    await asyncio.gather(
        *(
            apply_in_chunks(counter_store(aredis, other, live=True), again[i::2], 29)
            for i in range(2)
        )
    )
    assert outbox_errors(redis_client, other, f"{other}:rewards:outbox") == []
    assert holding(redis_client, other) == holding(redis_client, namespace)


async def test_a_replay_or_a_shadow_computes_the_same_rewards_and_emits_nothing(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    events, _ = generated_shop(seed=8)
    # Given the live namespace, and a rebuild's replay worker filling a fresh one (no outbox)
    replay = namespace + "r"
    spare.append(replay)
    await apply_in_chunks(counter_store(aredis, namespace, live=True), events, 60)
    await apply_in_chunks(counter_store(aredis, replay), events, 211)
    # Then the replay holds the same rewards, the same history even (same order of events)
    live_rewards = rewards(redis_client, namespace)
    assert live_rewards and rewards(redis_client, replay) == live_rewards
    assert dump(redis_client, replay) == dump(redis_client, namespace)
    # And emitted nothing, while the live one did
    assert outbox_errors(redis_client, namespace, f"{namespace}:rewards:outbox") == []
    assert not redis_client.exists(f"{replay}:rewards:outbox", f"{replay}:rewards:seq")
    # Given a hand-over: live workers write the active namespace and the rebuilt shadow
    base, active, shadow = namespace + "b", namespace + "b2", namespace + "b3"
    spare += [base, active, shadow]
    redis_client.hset(namespaces.pointer_key(base), mapping={"active": active, "shadow": shadow})
    worker = counter_store(aredis, base, live=True)
    for start in range(0, len(events), 60):
        written = await worker.targets()
        assert written == (active, shadow)
        await asyncio.gather(*(worker.apply(events[start : start + 60], ns) for ns in written))
    # Then both hold the live rewards; only the active one's transitions reach the base outbox
    assert rewards(redis_client, active) == rewards(redis_client, shadow) == live_rewards
    assert redis_client.xlen(f"{base}:rewards:outbox") == redis_client.xlen(
        f"{namespace}:rewards:outbox"
    )
    assert outbox_errors(redis_client, active, f"{base}:rewards:outbox") == []
    assert not redis_client.exists(f"{active}:rewards:outbox", f"{shadow}:rewards:outbox")


# --- the rules one by one -----------------------------------------------------------------------


def at(hours: float) -> datetime:
    return AT + timedelta(hours=hours)


class Case:
    """A small hand-written case: events applied to a live store, read back by name."""

    def __init__(self, aredis: aioredis.Redis, client: redis_sync.Redis, ns: str) -> None:
        self.store, self.client, self.ns = counter_store(aredis, ns, live=True), client, ns
        self.shop = Shop(1)

    async def apply(self, *events: ev.Event):
        return await self.store.apply(list(events))

    def reward(self, promotion: str, role: str, user: str) -> dict[str, str]:
        return self.client.hgetall(f"{self.ns}:reward:{reward_id(promotion, role, user)}")

    def status(self, promotion: str, role: str, user: str) -> str | None:
        return self.reward(promotion, role, user).get("status")

    def progress(self, promotion: str) -> dict[str, int]:
        return {s: int(n) for s, n in self.client.hgetall(f"{self.ns}:pc:{promotion}").items()}

    def credit(self, product: str, buyer: str) -> str | None:
        return self.client.hget(f"{self.ns}:credit:{product}|{buyer}", "s")

    def emitted(self) -> list[tuple[str, str, str | None]]:
        return [
            (f["type"], f["u"], f.get("reason"))
            for _, f in self.client.xrange(f"{self.ns}:rewards:outbox")
        ]


async def same_in_reverse(
    aredis: aioredis.Redis,
    client: redis_sync.Redis,
    ns: str,
    events: list[ev.Event],
    spare: list[str],
) -> None:
    """The events applied in reverse order (one by one) end in the state they made in order."""
    reverse = ns + "v"
    spare.append(reverse)
    for event in reversed(events):
        await counter_store(aredis, reverse).apply([event])
    assert dump(client, reverse) == dump(client, ns)
    assert holding(client, reverse) == holding(client, ns)


async def test_three_friends_unlock_one_coupon_the_self_purchase_does_not_count_a_refund_withdraws(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    case = Case(aredis, redis_client, namespace)
    shop, token = case.shop, case.shop.token()
    promotion = shop.promotion("promo-1", at(-1), at(-1), at(100), product_id="p1", goal=3)
    shared = shop.share("s1", "ana", "p1", at(0), token)
    bought = [shop.purchase(f"o{i}", f"b{i}", ["p1"], at(i), token) for i in (1, 2, 3)]
    own = shop.purchase("o0", "ana", ["p1"], at(2.5), token)
    # When a shop's promotion, the share and four purchases through the link arrive
    changed = await case.apply(promotion, shared, *bought[:2], own, bought[2])
    # Then the sharer has 3 of 3 (not their own purchase) and exactly one coupon, announced
    assert case.progress("promo-1") == {"ana": 3}
    reward = case.reward("promo-1", "sharer", "ana")
    assert reward["status"] == "earned" and reward["buyers"] == "3"
    assert reward["coupon"] == coupon_code(SECRET, reward_id("promo-1", "sharer", "ana"))
    assert redis_client.get(f"{namespace}:coupon:{reward['coupon']}") == reward_id(
        "promo-1", "sharer", "ana"
    )
    assert zmap(redis_client, f"{namespace}:via:p1") == {
        f"b{i}": int(at(i).timestamp() * 1000) for i in (1, 2, 3)
    }
    assert zmap(redis_client, f"{namespace}:sharers:p1") == {"ana": 3}
    assert zmap(redis_client, f"{namespace}:pq:promo-1") == {"ana": int(at(3).timestamp() * 1000)}
    assert changed.products == {"p1"} and "ana" in changed.users
    assert case.emitted() == [("earned", "ana", None)]
    # When one of the three is refunded before redemption
    refund = shop.refund("o2", "b2", "p1", 2, at(5))
    changed = await case.apply(refund)
    # Then the reward is withdrawn, once, and the sharer told
    assert case.progress("promo-1") == {"ana": 2}
    assert case.status("promo-1", "sharer", "ana") == "withdrawn"
    assert case.emitted() == [("earned", "ana", None), ("withdrawn", "ana", "refunded")]
    assert "ana" in changed.users and changed.products == {"p1"}
    await same_in_reverse(
        aredis, redis_client, namespace, [promotion, shared, *bought, own, refund], spare
    )


async def test_the_first_kept_referred_purchase_takes_the_credit_and_a_late_link_waits(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    case = Case(aredis, redis_client, namespace)
    shop = case.shop
    t1, t2, t3 = shop.token(), shop.token(), shop.token()
    # When bob buys p through his own link first, then through Ana's, then through Cleo's, the
    # purchases arriving before the shares
    purchases = [
        shop.purchase("o0", "bob", ["p"], at(1), t3),
        shop.purchase("o1", "bob", ["p"], at(2), t1),
        shop.purchase("o2", "bob", ["p"], at(3), t2),
    ]
    await case.apply(*purchases)
    # Then nothing is credited: the links wait
    assert case.credit("p", "bob") is None
    assert redis_client.smembers(f"{namespace}:linkwait:{t1}") == {"o1"}
    shares = [
        shop.share("s1", "ana", "p", at(0), t1),
        shop.share("s2", "cleo", "p", at(0), t2),
        shop.share("s3", "bob", "p", at(0), t3),
    ]
    await case.apply(*shares)
    # Then Ana's link, the first that is not bob's own, has the credit; bob counts once
    assert case.credit("p", "bob") == "ana"
    assert not redis_client.exists(f"{namespace}:linkwait:{t1}")
    assert zmap(redis_client, f"{namespace}:sharers:p") == {"ana": 1}
    # When that purchase is cancelled, the credit moves to the next one
    cancelled = shop.cancel("o1", "bob", at(4))
    await case.apply(cancelled)
    assert case.credit("p", "bob") == "cleo"
    assert zmap(redis_client, f"{namespace}:credits:ana") == {}
    assert zmap(redis_client, f"{namespace}:via:p") == {"bob": int(at(3).timestamp() * 1000)}
    await same_in_reverse(aredis, redis_client, namespace, [*purchases, *shares, cancelled], spare)


async def test_the_cap_goes_to_who_reached_the_goal_first_and_a_redeemed_reward_stays(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    redeemed_ns = namespace + "d"
    spare.append(redeemed_ns)
    plain, redeemed = (Case(aredis, redis_client, ns) for ns in (namespace, redeemed_ns))
    shop = plain.shop
    ta, tc = shop.token(), shop.token()
    setup = [
        shop.promotion("promo-1", at(-1), at(-1), at(100), product_id="p", goal=1, max_rewards=1),
        shop.share("s1", "ana", "p", at(0), ta),
        shop.share("s2", "cleo", "p", at(0), tc),
    ]
    late_for_ana = shop.purchase("o1", "b1", ["p"], at(5), ta)
    early_for_cleo = shop.purchase("o2", "b2", ["p"], at(3), tc)
    coupon = coupon_code(SECRET, reward_id("promo-1", "sharer", "ana"))
    redemption = shop.purchase("o3", "ana", ["q"], at(6), coupon=coupon)
    # When Ana's buyer arrives first: she has the only reward
    for case in (plain, redeemed):
        await case.apply(*setup, late_for_ana)
        assert case.status("promo-1", "sharer", "ana") == "earned"
    # When Cleo's earlier buyer arrives later, Ana's reward goes to Cleo
    await plain.apply(early_for_cleo)
    assert plain.status("promo-1", "sharer", "ana") == "withdrawn"
    assert plain.status("promo-1", "sharer", "cleo") == "earned"
    assert plain.emitted() == [
        ("earned", "ana", None),
        ("withdrawn", "ana", "changed"),
        ("earned", "cleo", None),
    ]
    # But once Ana redeemed it, it stays hers and fills the cap, even without her buyer
    await redeemed.apply(redemption, early_for_cleo, shop.cancel("o1", "b1", at(7)))
    assert redeemed.status("promo-1", "sharer", "ana") == "redeemed"
    assert redeemed.status("promo-1", "sharer", "cleo") is None
    assert redeemed.progress("promo-1") == {"cleo": 1}
    assert redeemed.emitted() == [("earned", "ana", None)]
    assert redis_client.get(f"{redeemed_ns}:redeemed:{coupon}") == "o3"


async def test_erasure_takes_a_sharer_and_a_buyer_out_of_every_credit_and_reward(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    case = Case(aredis, redis_client, namespace)
    shop = case.shop
    ta, tc = shop.token(), shop.token()
    events = [
        shop.promotion(
            "promo-1",
            at(-1),
            at(-1),
            at(100),
            product_id="p",
            goal=1,
            buyer_reward={"kind": "percent", "value": "5"},
        ),
        shop.share("s1", "ana", "p", at(0), ta),
        shop.share("s2", "cleo", "p", at(0), tc),
        shop.purchase("o1", "bob", ["p"], at(1), ta),
        shop.purchase("o2", "bob", ["p"], at(2), tc),
        shop.purchase("o3", "dan", ["p"], at(3), tc),
    ]
    await case.apply(*events)
    assert case.credit("p", "bob") == "ana" and case.progress("promo-1") == {"ana": 1, "cleo": 1}
    # When the sharer Ana is erased
    erase_ana = shop.erase("ana", at(10))
    await case.apply(erase_ana)
    # Then bob's credit moves to Cleo's link, Ana's reward is withdrawn (erased) and gone
    assert case.credit("p", "bob") == "cleo" and case.progress("promo-1") == {"cleo": 2}
    assert ("withdrawn", "ana", "erased") in case.emitted()
    assert case.reward("promo-1", "sharer", "ana") == {}
    assert not redis_client.exists(f"{namespace}:link:{ta}", f"{namespace}:rewards:ana")
    assert redis_client.smembers(f"{namespace}:linkwait:{ta}") == {"o1"}
    # When the buyer bob is erased too
    erase_bob = shop.erase("bob", at(11))
    await case.apply(erase_bob, events[1])  # and Ana's share is redelivered: still ignored
    # Then he is in no credit, his buyer reward is withdrawn and gone, Cleo keeps dan
    assert case.credit("p", "bob") is None and case.progress("promo-1") == {"cleo": 1}
    assert ("withdrawn", "bob", "erased") in case.emitted()
    assert case.reward("promo-1", "buyer", "bob") == {}
    assert zmap(redis_client, f"{namespace}:via:p") == {"dan": int(at(3).timestamp() * 1000)}
    assert case.status("promo-1", "sharer", "cleo") == "earned"
    assert mentions(dump(redis_client, namespace), "ana") == []
    assert mentions(dump(redis_client, namespace), "bob") == []
    await same_in_reverse(aredis, redis_client, namespace, [*events, erase_ana, erase_bob], spare)


async def test_a_promotion_change_an_end_or_a_category_recounts_from_the_credits(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str, spare: list[str]
) -> None:
    case = Case(aredis, redis_client, namespace)
    shop = case.shop
    token = shop.token()
    events = [
        shop.promotion("promo-1", at(-2), at(-1), at(100), category="mugs", goal=2),
        shop.share("s1", "ana", "p2", at(0), token),
        shop.purchase("o1", "b1", ["p2"], at(1), token),
        shop.purchase("o2", "b2", ["p2"], at(3), token),
    ]
    await case.apply(*events)
    # Then nothing counts while p2 has no category
    assert case.progress("promo-1") == {}
    # When p2 becomes a mug, both buyers count and Ana earns
    steps = [shop.product("p2", "mugs", at(4))]
    await case.apply(steps[-1])
    assert case.progress("promo-1") == {"ana": 2}
    assert case.status("promo-1", "sharer", "ana") == "earned"
    # When the shop ends the promotion as the second purchase is made, it no longer counts
    steps.append(shop.event(ev.PromotionEnded, {"promotion_id": "promo-1"}, at(3)))
    await case.apply(steps[-1])
    assert case.progress("promo-1") == {"ana": 1}
    assert case.status("promo-1", "sharer", "ana") == "withdrawn"
    # When a newer definition asks for one buyer (the end stays), she earns it again
    steps.append(shop.promotion("promo-1", at(5), at(-1), at(100), category="mugs", goal=1))
    steps.append(shop.promotion("promo-1", at(-3), at(-1), at(100), category="mugs", goal=5))
    await case.apply(*steps[-2:])  # (an older definition arriving late changes nothing)
    assert redis_client.hget(f"{namespace}:promo:promo-1", "goal") == "1"
    assert case.status("promo-1", "sharer", "ana") == "earned"
    # When p2 moves to the lamps (an older upsert arriving late changes nothing), it is withdrawn
    steps += [shop.product("p2", "lamps", at(6)), shop.product("p2", "mugs", at(5))]
    await case.apply(*steps[-2:])
    assert case.progress("promo-1") == {}
    assert [t for t, _, _ in case.emitted()] == ["earned", "withdrawn", "earned", "withdrawn"]
    assert {r for _, _, r in case.emitted()} == {None, "changed"}
    await same_in_reverse(aredis, redis_client, namespace, events + steps, spare)
