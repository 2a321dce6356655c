"""The sharded store layout (contracts/layout.py) and the counter store's router: every key of a
shard hashes to that shard's slot, shards spread evenly over a cluster's masters, and each
operation goes where the layout says (user facts everywhere, referrals in their shard)."""

from __future__ import annotations

import random
import string
from collections import Counter

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from contracts.layout import CLUSTER_SHARDS, StoreLayout, outbox_prefix
from contracts.views import Keys
from services.counters.store import route


def ids(rng: random.Random, n: int) -> list[str]:
    alphabet = string.ascii_letters + string.digits + ":._@-"
    return [
        rng.choice(string.ascii_letters) + "".join(rng.choices(alphabet, k=8)) for _ in range(n)
    ]


def test_one_shard_is_the_namespace_itself_and_routes_everything_unchanged() -> None:
    layout = StoreLayout("sp")
    assert layout.prefixes == ("sp",) and layout.referrals_prefix == "sp"
    assert layout.product_keys("p1").buyers("p1") == Keys("sp").buyers("p1")
    ops = [["P", "o", "u", 1, ["a", 1, "b", 2], "e", "tok", ""], ["F", 1, "u", "v", 1, "e"]]
    assert route(ops, layout) == {"sp": ops}


def test_every_key_of_a_products_shard_is_in_one_slot_whatever_the_ids() -> None:
    layout = StoreLayout("sp", CLUSTER_SHARDS)
    rng = random.Random(7)
    for product, user in zip(ids(rng, 200), ids(rng, 200), strict=True):
        keys = layout.product_keys(product)
        built = [
            keys.buyers(product),
            keys.user_buys(product, user),
            keys.feed(product),
            keys.friends(user),
            keys.consent(user),
            keys.erased,
            keys.trend_bucket(5),
            keys.friends_who_bought(user, product),
            keys.notes(user),
        ]
        assert len({key_slot(k.encode()) for k in built}) == 1, built
    assert len({key_slot(f"{p}:x".encode()) for p in layout.prefixes}) == len(layout.prefixes)


def test_shards_spread_evenly_over_masters_holding_equal_slot_ranges() -> None:
    layout = StoreLayout("sp", CLUSTER_SHARDS)
    for masters in (2, 3, 4, 6):
        width = REDIS_CLUSTER_HASH_SLOTS / masters
        per_master = Counter(
            int(key_slot(f"{p}:x".encode()) // width) for p in layout.product_prefixes
        )
        assert set(per_master.values()) == {CLUSTER_SHARDS // masters}, (masters, per_master)


def test_the_outbox_shares_the_referrals_shards_slot_on_a_cluster_only() -> None:
    layout = StoreLayout("sp-rebuilt-2", CLUSTER_SHARDS)
    outbox = Keys(outbox_prefix("sp", cluster=True)).rewards_outbox
    assert key_slot(outbox.encode()) == key_slot(f"{layout.referrals_prefix}:x".encode())
    assert Keys(outbox_prefix("sp", cluster=False)).rewards_outbox == Keys("sp").rewards_outbox


def test_operations_go_to_their_products_shard_user_facts_everywhere_referrals_apart() -> None:
    layout = StoreLayout("sp", 4)
    shard = layout.product_prefix
    rw = layout.referrals_prefix
    # products chosen to fall in two different shards
    products = [f"p{i}" for i in range(40)]
    a = products[0]
    b = next(p for p in products if shard(p) != shard(a))
    plain = ["P", "o1", "u", 1, [a, 1, b, 2], "e1"]
    referred = ["P", "o2", "u", 1, [a, 1, b, 2], "e2", "tok", "", "vis"]
    refund = ["R", "o2", "r1", "u", [a, 1, b, 1], 2]
    share_link = ["S", "s1", "u", a, "link", 3, "e3", "tok"]
    friendship, cancel, define = ["F", 1, "u", "v", 4, "e4"], ["C", "o1", "u", 5], ["D", "P1"]
    review = ["V", 1, b, "u", 5, 6, "e6"]
    routed = route(
        [plain, referred, refund, share_link, friendship, cancel, define, review], layout
    )
    # a purchase splits into its products' shards; referral fields go only to the referrals shard
    assert ["P", "o1", "u", 1, [a, 1], "e1"] in routed[shard(a)]
    assert ["P", "o1", "u", 1, [b, 2], "e1"] in routed[shard(b)]
    assert ["P", "o2", "u", 1, [a, 1], "e2", "", "", "vis"] in routed[shard(a)]
    assert ["P", "o2", "u", 1, [a, 1, b, 2], "e2", "tok", ""] in routed[rw]
    assert not any(op[:2] == ["P", "o1"] for op in routed[rw])
    # a refund: its lines per shard, and whole to the referrals shard
    assert ["R", "o2", "r1", "u", [b, 1], 2] in routed[shard(b)] and refund in routed[rw]
    # a share with a link: counted in its product's shard, attributed in the referrals shard
    assert share_link[:7] in routed[shard(a)] and share_link in routed[rw]
    # user facts and cancellations: every shard; promotions: the referrals shard only
    for prefix in layout.prefixes:
        assert friendship in routed[prefix] and cancel in routed[prefix]
        assert (define in routed[prefix]) == (prefix == rw)
    assert review in routed[shard(b)] and sum(review in ops for ops in routed.values()) == 1
