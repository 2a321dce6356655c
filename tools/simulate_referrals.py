"""The simulator's share-to-unlock traffic (issue #17): the demo shop's promotions, and purchases
that arrive through friends' share links.

- :data:`DEMO_PROMOTIONS`: what the simulator defines at the catalog when it starts (two products
  and one category), active from an hour before the start for :data:`PROMOTION_DAYS` days;
  :func:`promotion_bodies` gives the ``POST /v1/promotions`` bodies. An existing promotion (an
  earlier run) is left as it is: redefining it would move its period, and with it the credits.
- :class:`Referrals`: remembers the link tokens that ``POST /v1/shares`` answered (per product,
  the newest few) and picks one for a share of purchases (:data:`REFERRAL_RATE`): a friend's
  link when the buyer has a friend who shared the product, else another shopper's (a link
  posted publicly), never the buyer's own. Deterministic for a seed and the same answers.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

#: purchases that try to arrive through a share link of the product
REFERRAL_RATE = 0.35
#: of those without a friend's link, the share that still takes another shopper's link
STRANGER_RATE = 0.3
#: links remembered per product (the newest)
LINKS_KEPT = 20
PROMOTION_DAYS = 90

DEMO_PROMOTIONS: list[dict] = [
    {
        "id": "demo-share-p0",
        "product_id": "p0",
        "title": "Share the espresso love",
        "sharer_reward": {"kind": "percent", "value": 10},
        "buyer_reward": {"kind": "percent", "value": 5},
        "goal": {"buyers": 3},
    },
    {
        "id": "demo-share-p1",
        "product_id": "p1",
        "title": "Bring two friends",
        "sharer_reward": {"kind": "percent", "value": 15},
        "goal": {"buyers": 2},
    },
    {
        "id": "demo-share-home",
        "category": "home",
        "title": "Home picks to share",
        "sharer_reward": {"kind": "fixed", "value": "5.00", "currency": "EUR"},
        "goal": {"buyers": 2},
        "max_rewards": 50,
    },
]


def promotion_bodies(now: datetime | None = None) -> list[dict]:
    """The ``POST /v1/promotions`` bodies of the demo promotions, starting an hour ago."""
    now = now or datetime.now(UTC)
    starts, ends = now - timedelta(hours=1), now + timedelta(days=PROMOTION_DAYS)
    return [
        {**promotion, "starts_at": starts.isoformat(), "ends_at": ends.isoformat()}
        for promotion in DEMO_PROMOTIONS
    ]


class Referrals:
    """Share links the services answered, and which purchase arrives through which."""

    def __init__(self, seed: int, rate: float = REFERRAL_RATE) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.friends: dict[str, set[str]] = defaultdict(set)
        #: product -> [(sharer, token)], newest last
        self.links: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.picked = 0

    def befriend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for a, b in pairs:
            self.friends[a].add(b)
            self.friends[b].add(a)

    def remember(self, sharer: str, product: str, token: str) -> None:
        links = self.links[product]
        links.append((sharer, token))
        del links[:-LINKS_KEPT]

    def pick(self, buyer: str, product: str) -> str | None:
        """The link token a purchase of ``product`` by ``buyer`` arrives through, if any."""
        if self.rng.random() >= self.rate:
            return None
        others = [(s, t) for s, t in self.links.get(product, ()) if s != buyer]
        friends = [(s, t) for s, t in others if s in self.friends[buyer]]
        if friends:
            chosen = self.rng.choice(friends)
        elif others and self.rng.random() < STRANGER_RATE:
            chosen = self.rng.choice(others)
        else:
            return None
        self.picked += 1
        return chosen[1]
