"""Badge experiments in the counter store, for tests: events built by hand (``World``), a generated
shop (``generated_world``: three experiments and the plain badge, visitors, logged-in viewers,
purchases with and without a visitor id, windows hit exactly at their ends and missed by a
millisecond, equal times, refunds, cancellations, erasures of a viewer and a buyer, re-sent
beacons, impressions arriving after the purchases they explain), and a reader that compares every
experiment key of a namespace with what :class:`~services.counters.experiment_oracle.
ExperimentOracle` says they must hold (``oracle_errors``)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import redis as redis_sync

from contracts import events as ev
from services.counters.experiment_oracle import ExperimentOracle

AT = datetime(2026, 12, 7, tzinfo=UTC)
HOUR = timedelta(hours=1)
MS = timedelta(milliseconds=1)
KIND_LETTER = {"viewed": "v", "clicked": "c", "dismissed": "d"}


def at(hours: float) -> datetime:
    return AT + timedelta(hours=hours)


class World:
    """Builds events with ids from a seeded generator (the same world for the same seed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def event(self, cls, payload: dict, when: datetime) -> ev.Event:
        event_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return cls.create(payload, producer="test", occurred_at=when, event_id=event_id)

    def interaction(
        self,
        cls,
        visitor: str,
        product: str,
        when: datetime,
        experiment: str | None = None,
        variant: str | None = None,
        viewer: str | None = None,
        window_h: int | None = None,
    ) -> ev.Event:
        body = {
            "visitor_id": visitor,
            "viewer_id": viewer,
            "product_id": product,
            "experiment_id": experiment,
            "variant": variant,
            "attribution_window_s": window_h * 3600 if window_h else None,
        }
        return self.event(cls, body, when)

    def view(self, *args, **kwargs) -> ev.Event:
        return self.interaction(ev.BadgeViewed, *args, **kwargs)

    def click(self, *args, **kwargs) -> ev.Event:
        return self.interaction(ev.BadgeClicked, *args, **kwargs)

    def dismiss(self, *args, **kwargs) -> ev.Event:
        return self.interaction(ev.BadgeDismissed, *args, **kwargs)

    def purchase(
        self, order: str, user: str, products: list[str], when: datetime, visitor: str | None = None
    ) -> ev.Event:
        lines = [{"product_id": p, "quantity": 2, "unit_price": "5.00"} for p in products]
        body = {"order_id": order, "user_id": user, "currency": "EUR", "lines": lines}
        return self.event(ev.PurchaseCompleted, {**body, "visitor_id": visitor}, when)

    def refund(self, order: str, user: str, product: str, qty: int, when: datetime) -> ev.Event:
        body = {
            "order_id": order,
            "refund_id": f"rf-{order}-{product}-{qty}",
            "user_id": user,
            "lines": [{"product_id": product, "quantity": qty}],
        }
        return self.event(ev.OrderRefunded, body, when)

    def cancel(self, order: str, user: str, when: datetime) -> ev.Event:
        return self.event(ev.OrderCancelled, {"order_id": order, "user_id": user}, when)

    def erase(self, user: str, when: datetime) -> ev.Event:
        return self.event(ev.UserErased, {"user_id": user}, when)


#: experiment -> (products, variants, window h); the plain badge ("_") covers any product
EXPERIMENTS = {
    "exp-a": (["p0", "p1", "p2", "p3"], ["control", "friends"], 24),
    "exp-b": (["p4", "p5"], ["control", "counts", "friends"], 2),
    "exp-c": (["p6"], ["control", "social"], 720),
}
PRODUCTS = [f"p{i}" for i in range(8)]


def generated_world(seed: int = 18) -> tuple[list[ev.Event], dict]:
    """Events in the order a stream might deliver them (by time, but for impressions that arrive
    after the purchases they explain, and re-sent beacons) and what the test should find."""
    w = World(seed)
    rng = w.rng
    visitors = [f"visitor-{i:03d}" for i in range(36)]
    users = [f"u{i}" for i in range(20)]
    linked = {users[i]: visitors[i] for i in range(12)}  # logged in on their own device
    linked_second = {"u0": visitors[30], "u1": visitors[31]}  # a second device
    assigned = {
        (e, v): rng.choice(variants)
        for e, (_, variants, _) in EXPERIMENTS.items()
        for v in visitors
    }
    owner = {v: u for u, v in linked.items()} | {v: u for u, v in linked_second.items()}
    scope = {p: e for e, (products, _, _) in EXPERIMENTS.items() for p in products}
    minute = lambda: at(rng.randrange(0, 6 * 24 * 60) / 60)  # noqa: E731

    events: list[ev.Event] = []
    views: list[ev.Event] = []

    def interact(cls, visitor: str, product: str, when: datetime) -> ev.Event:
        viewer = owner.get(visitor) if rng.random() < 0.6 else None
        experiment = scope.get(product) if rng.random() < 0.8 else None
        if experiment is None:  # the plain badge: stamped 24 h, or older producers: none
            return w.interaction(
                cls, visitor, product, when, viewer=viewer, window_h=rng.choice([24, None])
            )
        window = EXPERIMENTS[experiment][2]
        variant = assigned[(experiment, visitor)]
        return w.interaction(cls, visitor, product, when, experiment, variant, viewer, window)

    for _ in range(300):
        e = interact(ev.BadgeViewed, rng.choice(visitors), rng.choice(PRODUCTS), minute())
        views.append(e)
    for _ in range(90):
        seen = rng.choice(views).payload
        when = minute()
        cls = ev.BadgeClicked if rng.random() < 0.6 else ev.BadgeDismissed
        events.append(interact(cls, seen.visitor_id, seen.product_id, when))
    # a visitor in two variants of one experiment (the notifier never lets it happen; the
    # figures stay exact all the same), and two impressions at the same ms (the member decides)
    odd = visitors[20]
    views += [
        w.view(odd, "p0", at(30), "exp-a", "control"),
        w.view(odd, "p0", at(31), "exp-a", "friends", window_h=24),
        w.view(visitors[21], "p1", at(40), "exp-a", "control", window_h=24),
        w.view(visitors[21], "p1", at(40), "exp-a", "friends", window_h=24),
    ]

    orders: list[tuple[str, str, list[str], datetime]] = []

    def buy(user: str, products: list[str], when: datetime, visitor: str | None) -> str:
        order = f"o{len(orders)}"
        orders.append((order, user, products, when))
        events.append(w.purchase(order, user, products, when, visitor))
        return order

    for _ in range(220):
        seen = rng.choice(views)
        p = seen.payload
        window = timedelta(seconds=p.attribution_window_s or 24 * 3600)
        offset = rng.choice([0 * MS, window, window + MS, -MS, window / 3, window / 2, window * 3])
        when = seen.occurred_at + offset
        buyer_of = owner.get(p.visitor_id)
        roll = rng.random()
        if buyer_of and roll < 0.45:  # the visitor's own user, with or without the visitor id
            user, visitor = buyer_of, rng.choice([p.visitor_id, None])
        elif roll < 0.8:  # someone on the visitor's device (anonymous then)
            user, visitor = rng.choice(users), p.visitor_id
        else:  # unrelated
            user, visitor = rng.choice(users), rng.choice([None, rng.choice(visitors)])
        products = [p.product_id] + ([rng.choice(PRODUCTS)] if rng.random() < 0.2 else [])
        buy(user, list(dict.fromkeys(products)), when, visitor)
    # exactly at the window's ends (both included) and a millisecond past them
    edge = w.view(visitors[22], "p4", at(50), "exp-b", "counts", window_h=2)
    events.append(edge)
    boundary = [
        buy("u15", ["p4"], at(50), visitors[22]),
        buy("u16", ["p4"], at(52), visitors[22]),
        buy("u17", ["p4"], at(52) + MS, visitors[22]),
        buy("u18", ["p4"], at(50) - MS, visitors[22]),
    ]
    for order, user, products, when in rng.sample(orders[: -len(boundary)], 60):
        later = when + timedelta(hours=rng.randrange(1, 30))
        roll = rng.random()
        if roll < 0.3:
            events.append(w.cancel(order, user, later))
        elif roll < 0.6:
            events.append(w.refund(order, user, products[0], 2, later))  # to zero
        else:
            events.append(w.refund(order, user, products[0], 1, later))  # still kept
    events += views
    # erasures: a viewer whose impressions explain purchases by others (they move to what remains
    # of the visitor's impressions), a buyer with attributed purchases; then events of both
    before = ExperimentOracle(events)
    resting = [
        (before.interactions[a.impression].viewer, a)
        for a in before.attributions.values()
        if before.interactions[a.impression].viewer not in (None, before.purchases[a.order].user)
    ]
    erased_viewer = min(v for v, _ in resting)
    # one of the lines resting on their impressions has an earlier one of the visitor to fall
    # back on (no viewer: it stays)
    moved = None
    for v, a in resting:
        imp = before.interactions[a.impression]
        if v == erased_viewer and a.ms < imp.ms + imp.window_s * 1000 - 60_000:
            plain = a.experiment == "_"
            when = datetime.fromtimestamp((imp.ms - 60_000) / 1000, UTC)
            events.append(
                w.view(
                    imp.visitor,
                    a.product,
                    when,
                    None if plain else a.experiment,
                    None if plain else a.variant,
                    window_h=imp.window_s // 3600,
                )
            )
            moved = (a.order, a.product, a.experiment)
            break
    buyers = sorted(
        {before.purchases[a.order].user for a in before.attributions.values()} - {erased_viewer}
    )
    erased_buyer = buyers[0]
    end = at(7 * 24)
    events += [w.erase(erased_viewer, end), w.erase(erased_buyer, end)]
    events += [
        w.view(linked[erased_viewer], "p0", end + HOUR, "exp-a", "friends", erased_viewer, 24),
        w.click(linked[erased_viewer], "p0", end + HOUR, "exp-a", "friends", erased_viewer, 24),
        w.view(visitors[33], "p1", end + HOUR, "exp-a", "control", erased_buyer, 24),
    ]
    buy(erased_buyer, ["p1"], end + 2 * HOUR, visitors[33])
    buy("u19", ["p1"], end + 2 * HOUR, visitors[33])
    events.sort(key=lambda e: (e.occurred_at, str(e.event_id)))
    # some impressions arrive after the purchases they explain, and some beacons are re-sent
    late = rng.sample([e for e in events if isinstance(e, ev.BadgeViewed)], 40)
    events = [e for e in events if e not in late] + late
    events += [e.model_copy() for e in rng.sample(views, 15)]
    return events, {
        "boundary": boundary,
        "erased": (erased_viewer, erased_buyer),
        # lines of others that rested on the erased viewer's impressions before the erasure
        "resting": [(a.order, a.product, a.experiment) for v, a in resting if v == erased_viewer],
        "moved": moved,
    }


# --- reading the store back ---------------------------------------------------------------------


def _zmap(client: redis_sync.Redis, key: str) -> dict[str, int]:
    return {m: int(s) for m, s in client.zrange(key, 0, -1, withscores=True)}


def experiment_keys(client: redis_sync.Redis, ns: str) -> dict[str, object]:
    """Every experiment key of the namespace, short name -> content (zsets as member -> int
    score, sets sorted)."""
    out: dict[str, object] = {}
    keys = list(client.scan_iter(f"{ns}:x*", count=1000)) + [f"{ns}:experiments"]
    for key in keys:
        short, kind = key[len(ns) + 1 :], client.type(key)
        if kind == "hash":
            out[short] = client.hgetall(key)
        elif kind == "set":
            out[short] = sorted(client.smembers(key))
        elif kind == "zset":
            out[short] = _zmap(client, key)
        elif kind != "none":
            out[short] = f"unexpected {kind}"
    return out


def expected_keys(oracle: ExperimentOracle) -> dict[str, object]:
    """What the experiment keys must hold (contracts/views.py's layout) by the oracle."""
    out: dict[str, dict] = {}

    def put(key: str, field: str, value) -> None:
        out.setdefault(key, {})[field] = value

    sets: dict[str, set[str]] = {}
    for i in oracle.interactions.values():
        E, V = i.experiment, i.variant
        record = "|".join(
            [
                KIND_LETTER[i.kind],
                E,
                V,
                i.visitor,
                i.product,
                str(i.window_s),
                i.event_id,
                str(i.ms),
            ]
        )
        if i.viewer:
            sets.setdefault(f"xu:{i.viewer}", set()).add(record)
        if i.kind != "viewed":
            sets.setdefault(f"xvc:{E}|{i.visitor}", set()).add(i.event_id)
            continue
        put(f"xim:v:{i.visitor}|{i.product}", i.member, i.ms)
        if i.viewer:
            put(f"xim:u:{i.viewer}|{i.product}", i.member, i.ms)
        put(f"xvi:{E}|{i.visitor}", f"{V}|{i.event_id}", i.ms)
    for purchase in oracle.purchases.values():
        if purchase.visitor:
            for p in purchase.products:
                put(f"xvo:{purchase.visitor}|{p}", purchase.order, str(purchase.ms))
    for a in oracle.attributions.values():
        put(f"xa:{a.order}|{a.product}", a.experiment, f"{a.variant}|{a.visitor}")
        put(f"xvl:{a.experiment}|{a.visitor}", f"{a.order}|{a.product}", a.ms)
    names = {"impressions": "imp", "clicks": "clk", "dismissals": "dis", "purchases": "pur"}
    for E in oracle.experiments:
        for (V, p), funnel in oracle.products(E).items():
            for attr, short in names.items():
                n = getattr(funnel, attr)
                if n:
                    put(f"xr:{E}", f"{V}|{p}|{short}", str(n))
        for V in oracle.variants(E):
            if first := oracle.first_seen(E, V):
                out[f"xvf:{E}|{V}"] = first
            if converted := oracle.converted(E, V):
                out[f"xcv:{E}|{V}"] = converted
    result: dict[str, object] = dict(out)
    result.update({k: sorted(v) for k, v in sets.items()})
    if oracle.experiments:
        result["experiments"] = sorted(oracle.experiments)
    return result


def oracle_errors(client: redis_sync.Redis, ns: str, oracle: ExperimentOracle) -> list[str]:
    """Every experiment key where the namespace and the oracle differ (empty: none)."""
    got, want = experiment_keys(client, ns), expected_keys(oracle)
    return [
        f"{key}: store {got.get(key)} != oracle {want.get(key)}"
        for key in sorted(set(got) | set(want))
        if got.get(key) != want.get(key)
    ]
