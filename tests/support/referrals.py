"""Referral attribution and rewards in the counter store, for tests: a generated shop's events
(``generated_shop``: shares with links, referred purchases through known, unknown and the buyer's
own links, refunds, cancellations, four promotions with caps, a buyer reward, a changed
definition, an early end and a category change, coupon redemptions, erasures), and readers that
compare what a namespace holds with :class:`services.counters.referral_oracle.ReferralOracle`
(``oracle_errors``), with another namespace (``dump`` without the reward history), and the
outbox with the rewards' transitions (``outbox_errors``)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import redis as redis_sync
import redis.asyncio as aioredis

from contracts import events as ev
from services.counters.referral_oracle import ReferralOracle, coupon_code, reward_id
from services.counters.store import CounterStore
from tests.support.stores import dump_namespace

SECRET = "test-coupon-secret"
AT = datetime(2026, 11, 2, tzinfo=UTC)
DAY = timedelta(days=1)
TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz234567"


def store(aredis: aioredis.Redis, ns: str, live: bool = False) -> CounterStore:
    return CounterStore(aredis, ns, follow_active=live, coupon_secret=SECRET)


# --- events -------------------------------------------------------------------------------------


class Shop:
    """Builds events with ids from a seeded generator (the same shop for the same seed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def event(self, cls, payload: dict, at: datetime) -> ev.Event:
        event_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return cls.create(payload, producer="test", occurred_at=at, event_id=event_id)

    def token(self) -> str:
        return "lk-" + "".join(self.rng.choice(TOKEN_CHARS) for _ in range(26))

    def product(self, p: str, category: str | None, at: datetime) -> ev.Event:
        body = {"product_id": p, "name": p, "price": "5.00", "currency": "EUR"}
        return self.event(ev.ProductUpserted, {**body, "category": category}, at)

    def promotion(
        self, pid: str, at: datetime, start: datetime, end: datetime, **fields
    ) -> ev.Event:
        body = {
            "promotion_id": pid,
            "sharer_reward": {"kind": "percent", "value": "10"},
            "starts_at": start,
            "ends_at": end,
            **fields,
        }
        body["goal"] = {"buyers": body["goal"]}
        return self.event(ev.PromotionDefined, body, at)

    def share(self, share: str, user: str, p: str, at: datetime, token: str | None) -> ev.Event:
        body = {"share_id": share, "user_id": user, "product_id": p, "channel": "link"}
        return self.event(ev.ProductShared, {**body, "link_token": token}, at)

    def purchase(
        self,
        order: str,
        user: str,
        products: list[str],
        at: datetime,
        referral: str | None = None,
        coupon: str | None = None,
    ) -> ev.Event:
        lines = [{"product_id": p, "quantity": 2, "unit_price": "5.00"} for p in products]
        body = {"order_id": order, "user_id": user, "currency": "EUR", "lines": lines}
        return self.event(
            ev.PurchaseCompleted, {**body, "referral": referral, "coupon": coupon}, at
        )

    def refund(self, order: str, user: str, product: str, qty: int, at: datetime) -> ev.Event:
        body = {
            "order_id": order,
            "refund_id": f"rf-{order}-{qty}",
            "user_id": user,
            "lines": [{"product_id": product, "quantity": qty}],
        }
        return self.event(ev.OrderRefunded, body, at)

    def cancel(self, order: str, user: str, at: datetime) -> ev.Event:
        return self.event(ev.OrderCancelled, {"order_id": order, "user_id": user}, at)

    def erase(self, user: str, at: datetime) -> ev.Event:
        return self.event(ev.UserErased, {"user_id": user}, at)


def generated_shop(seed: int = 5) -> tuple[list[ev.Event], dict]:
    """Events in time order and what the test should find in them (names of chosen users)."""
    shop = Shop(seed)
    rng = shop.rng
    products = [f"p{i}" for i in range(8)]
    users = [f"u{i}" for i in range(30)]
    sharers = users[:8]
    events = [
        shop.product(p, "mugs" if i < 4 else "lamps", AT - DAY) for i, p in enumerate(products)
    ]
    events += [
        shop.product("p4", "mugs", AT - 2 * DAY),  # older: loses to the upsert above
        shop.product("p3", "lamps", AT + 4 * DAY),  # p3 leaves the mugs for the lamps
        shop.promotion(
            "promo-a",
            AT - DAY,
            AT,
            AT + 8 * DAY,
            product_id="p0",
            goal=2,
            buyer_reward={"kind": "fixed", "value": "5.00", "currency": "EUR"},
        ),
        shop.promotion(
            "promo-b", AT - DAY, AT + DAY, AT + 9 * DAY, category="mugs", goal=3, max_rewards=2
        ),
        shop.promotion(
            "promo-c", AT - DAY, AT, AT + 10 * DAY, product_id="p5", goal=1, max_rewards=1
        ),
        shop.promotion(
            "promo-c",
            AT + 3 * DAY,
            AT,
            AT + 10 * DAY,
            product_id="p5",
            goal=2,
            max_rewards=3,
            buyer_reward={"kind": "percent", "value": "5"},
        ),
        shop.promotion("promo-d", AT - DAY, AT, AT + 9 * DAY, category="lamps", goal=2),
        shop.event(ev.PromotionEnded, {"promotion_id": "promo-d"}, AT + 6 * DAY),
        shop.event(ev.PromotionEnded, {"promotion_id": "promo-d"}, AT + 5 * DAY),
    ]
    minute = lambda: AT + timedelta(minutes=rng.randrange(0, 9 * 24 * 60))  # noqa: E731
    tokens: list[tuple[str, str]] = []  # (token, sharer)
    for i in range(45):
        sharer, token = rng.choice(sharers), shop.token()
        tokens.append((token, sharer))
        events.append(shop.share(f"s{i}", sharer, rng.choice(products), minute(), token))
    events += [shop.share(f"s{45 + i}", rng.choice(users), "p1", minute(), None) for i in range(3)]
    orders: list[tuple[str, str, list[str], datetime]] = []
    for i in range(230):
        buyer, at = rng.choice(users), minute()
        lines = rng.sample(products, rng.choice((1, 1, 1, 2)))
        roll, referral = rng.random(), None
        own = [t for t, s in tokens if s == buyer]
        if roll < 0.65:
            referral = rng.choice(tokens)[0]
        elif roll < 0.70:
            referral = shop.token()  # never shared: attributes nothing, waits for ever
        elif roll < 0.77 and own:
            referral = rng.choice(own)  # self-referral
        order = f"o{i}"
        orders.append((order, buyer, lines, at))
        events.append(shop.purchase(order, buyer, lines, at, referral))
    for order, buyer, lines, at in rng.sample(orders, 40):
        later = at + timedelta(hours=rng.randrange(1, 48))
        if rng.random() < 0.35:
            events.append(shop.cancel(order, buyer, later))
        else:
            events.append(shop.refund(order, buyer, lines[0], rng.choice((1, 2)), later))
    # redemptions of rewards earned so far, one of them then losing its buyers (pinned), one
    # coupon that belongs to no reward; then a sharer and a buyer are erased
    oracle = ReferralOracle(events, SECRET)
    earned = sorted(r for r in oracle.rewards().values() if r.status == "earned")
    chosen = [r for r in earned if r.role == "sharer"][:3] + [
        r for r in earned if r.role == "buyer"
    ][:1]
    end = AT + 9 * DAY + timedelta(hours=12)
    for i, r in enumerate(chosen):
        events.append(shop.purchase(f"red{i}", r.user, ["p7"], end, coupon=oracle.coupon(r.id)))
    events.append(shop.purchase("red-bogus", "u29", ["p7"], end, coupon="SP-0123456789ABCDEF"))
    pinned = chosen[0]
    for (p, b), c in oracle.credits.items():
        if c.sharer == pinned.user and oracle.in_scope(oracle.promotions[pinned.promotion], p):
            events.append(shop.cancel(c.order, b, end + timedelta(minutes=1)))
    # a sharer holding a capped reward (the next one in line gets it) and a credited buyer
    redeemers = {r.user for r in chosen}
    holders = [r for r in earned if r.role == "sharer" and r.user not in redeemers]
    erased_sharer = min(holders, key=lambda r: (r.promotion != "promo-b", r.user)).user
    erased_buyer = sorted(b for (_, b) in oracle.credits if b not in sharers + [*redeemers])[0]
    events += [shop.erase(erased_sharer, end + DAY), shop.erase(erased_buyer, end + DAY)]
    events.sort(key=lambda e: (e.occurred_at, str(e.event_id)))
    return events, {
        "products": products,
        "users": users,
        "pinned": pinned,
        "redeemed": chosen,
        "erased": (erased_sharer, erased_buyer),
    }


# --- reading the store back ---------------------------------------------------------------------

#: reward hashes, users' reward sets and coupon keys record the history of transitions (a reward
#: earned and withdrawn again exists; one never earned does not), so they are compared apart
HISTORY = ("reward:", "rewards:", "coupon:")


def dump(client: redis_sync.Redis, ns: str) -> dict[str, object]:
    """The namespace's state without the reward history (``HISTORY``)."""
    return {k: v for k, v in dump_namespace(client, ns).items() if not k.startswith(HISTORY)}


def rewards(client: redis_sync.Redis, ns: str) -> dict[str, dict[str, str]]:
    return {
        key[len(ns) + len(":reward:") :]: client.hgetall(key)
        for key in client.scan_iter(f"{ns}:reward:*", count=1000)
    }


def holding(client: redis_sync.Redis, ns: str) -> dict[str, tuple[str, str, str, str]]:
    """The rewards that hold now (earned or redeemed): the order-independent part."""
    return {
        rid: (r["P"], r["role"], r["u"], r["status"])
        for rid, r in rewards(client, ns).items()
        if r["status"] != "withdrawn"
    }


def zmap(client: redis_sync.Redis, key: str) -> dict[str, int]:
    return {m: int(s) for m, s in client.zrange(key, 0, -1, withscores=True)}


def oracle_errors(client: redis_sync.Redis, ns: str, oracle: ReferralOracle, users) -> list[str]:
    """Every difference between the store and the oracle (empty: none)."""
    errors: list[str] = []

    def check(what: str, got: object, want: object) -> None:
        if got != want:
            errors.append(f"{what}: store {got} != oracle {want}")

    products = {p for p, _ in oracle.credits} | {"p0", "p1", "p5"}
    for p in sorted(products):
        check(f"via:{p}", zmap(client, f"{ns}:via:{p}"), oracle.via(p))
        check(f"sharers:{p}", zmap(client, f"{ns}:sharers:{p}"), oracle.sharers(p))
    for u in users:
        check(f"credits:{u}", zmap(client, f"{ns}:credits:{u}"), oracle.credited_to(u))
    credits = {}
    for key in client.scan_iter(f"{ns}:credit:*", count=1000):
        p, b = key[len(ns) + len(":credit:") :].split("|")
        credits[(p, b)] = client.hgetall(key)
    want = {k: {"o": c.order, "s": c.sharer, "ts": str(c.ms)} for k, c in oracle.credits.items()}
    check("credit keys", credits, want)
    for pid in sorted(oracle.promotions):
        progress = {s: int(n) for s, n in client.hgetall(f"{ns}:pc:{pid}").items()}
        check(f"pc:{pid}", progress, oracle.progress(pid))
        check(f"pq:{pid}", zmap(client, f"{ns}:pq:{pid}"), oracle.qualified(pid))
    expected = {rid: (r.promotion, r.role, r.user, r.status) for rid, r in oracle.rewards().items()}
    check("rewards that hold", holding(client, ns), expected)
    for rid, r in rewards(client, ns).items():
        if rid != reward_id(r["P"], r["role"], r["u"]) or r["coupon"] != coupon_code(SECRET, rid):
            errors.append(f"reward {rid}: id or coupon not derived from {r}")
    for pid in oracle.promotions:
        for key, role, status in (
            ("pe", "sharer", "earned"),
            ("pr", "sharer", "redeemed"),
            ("pb", "buyer", "earned"),
        ):
            got = client.smembers(f"{ns}:{key}:{pid}")
            want_set = {
                u for P, ro, u, st in expected.values() if (P, ro, st) == (pid, role, status)
            }
            check(f"{key}:{pid}", got, want_set)
    return errors


def mentions(state: dict[str, object], user: str) -> list[str]:
    """The keys of a ``dump`` that name the user: in the key, as a member, field or value."""

    def names(text: object) -> bool:
        return isinstance(text, str) and user in text.replace("|", ":").split(":")

    found = []
    for key, value in state.items():
        if key == "erased":
            continue
        items: list = []
        if isinstance(value, dict):
            items = [*value, *value.values()]
        elif isinstance(value, list):
            items = [m[0] if isinstance(m, tuple) else m for m in value]
        else:
            items = [value]
        if names(key) or any(names(i) for i in items):
            found.append(key)
    return found


async def apply_in_chunks(s: CounterStore, events: list[ev.Event], size: int) -> None:
    for start in range(0, len(events), size):
        await s.apply(events[start : start + size])


def outbox_errors(client: redis_sync.Redis, ns: str, outbox: str) -> list[str]:
    """Where the outbox is not one valid entry per transition of the namespace's rewards: per
    reward, entries numbered 1..n, earned and withdrawn alternating from earned, n = the
    reward's ``seq``, the last one saying whether it holds."""
    errors: list[str] = []
    by_reward: dict[str, list[dict[str, str]]] = {}
    for _, fields in client.xrange(outbox):
        by_reward.setdefault(fields["reward"], []).append(fields)
    stored = rewards(client, ns)
    for rid, entries in by_reward.items():
        types = [e["type"] for e in entries]
        if [int(e["seq"]) for e in entries] != list(range(1, len(entries) + 1)):
            errors.append(f"{rid}: emission numbers {[e['seq'] for e in entries]}")
        if types != ["earned", "withdrawn"] * (len(types) // 2) + ["earned"] * (len(types) % 2):
            errors.append(f"{rid}: transitions {types}")
        for e in entries:
            common = {
                "reward_id": rid,
                "promotion_id": e["P"],
                "role": e["role"],
                "user_id": e["u"],
                "coupon": e["coupon"],
            }
            if e["type"] == "earned":
                spec = ev.RewardSpec(
                    kind=e["kind"], value=e["value"], currency=e.get("currency") or None
                )
                ev.RewardEarnedPayload(**common, reward=spec, buyers=int(e["buyers"]))
            else:
                ev.RewardWithdrawnPayload(**common, reason=e["reason"])
        reward = stored.get(rid)
        if reward is None:  # an erased user's (a redeemed one goes without a word)
            continue
        if int(reward["seq"]) != len(entries):
            errors.append(f"{rid}: {len(entries)} entries for seq {reward['seq']}")
        if (types[-1] == "withdrawn") != (reward["status"] == "withdrawn"):
            errors.append(f"{rid}: last emitted {types[-1]} but {reward['status']}")
    # (a buyer's reward redeemed under a definition that has no buyer reward any more, never
    # earned in this namespace, has no reward to announce: it changes status silently, seq 0)
    errors += [
        f"{rid}: never emitted"
        for rid, r in stored.items()
        if rid not in by_reward and (r["seq"], r["role"], r["status"]) != ("0", "buyer", "redeemed")
    ]
    return errors
