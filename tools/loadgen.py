"""A deterministic-by-seed load generator: a small synthetic shop as contract events.

The same ``LoadConfig`` (seed and anchor time included) always yields the same users, friendship
graph, products and event stream, event ids included, so benchmarks are repeatable and a test can
compute an oracle from exactly the events it published. Used by ``make bench`` (and meant for a
future ``socialproof simulate``)::

    gen = LoadGenerator(LoadConfig(seed=7, users=10_000, products=1_000, mean_friends=150))
    setup = gen.setup_events()          # first names, consent, friendships
    stream = gen.activity_events(100_000)   # purchases, refunds, cancels, reviews, shares, …

- users have first names (from a fixed list) and ids ``u{n}``;
- friendships follow a heavy-tailed (Chung-Lu, Pareto weights) graph with the configured mean
  degree: most users have a few dozen friends, a few have thousands;
- products ``p{n}`` have Zipf popularity (rank r is chosen with weight ``1 / r**zipf_s``);
- the activity mix (purchases, refunds, cancellations, reviews posted/edited/deleted, shares,
  consent changes) is configurable; event times spread over ``span_hours`` before ``anchor``.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts import events as ev

FIRST_NAMES = (
    "Ana Ben Chloe David Emma Felix Grace Hugo Ines Jonas Kira Leo Mia Noah Olga Paul Quinn Rosa "
    "Sam Tara Uma Victor Wen Xavi Yara Zoe Ali Bea Carl Dana Eli Fay Gus Hana Ivan Jade Karl Lina "
    "Marc Nina Omar Pia Raul Sara Tom Vera Will Yusuf"
).split()

QUESTION_TEXTS = (
    "Does it come with a warranty?",
    "How big is it in real life?",
    "Is it worth the price?",
    "How long does delivery take?",
    "Is it easy to clean?",
)
ANSWER_TEXTS = (
    "Yes, two years.",
    "Smaller than it looks in the photos.",
    "Absolutely, I use it every day.",
    "Mine came in three days.",
    "Very easy, it takes a minute.",
)

DEFAULT_MIX: dict[str, float] = {
    "purchase": 0.45,
    "share": 0.30,
    "review": 0.15,
    "review_edit": 0.02,
    "review_delete": 0.01,
    "refund": 0.03,
    "cancel": 0.01,
    "consent": 0.03,
}


@dataclass(frozen=True)
class LoadConfig:
    seed: int = 42
    users: int = 10_000
    products: int = 1_000
    mean_friends: float = 150.0
    #: Pareto shape of the degree distribution (smaller = heavier tail)
    degree_alpha: float = 2.2
    zipf_s: float = 1.1
    #: event times fall in the ``span_hours`` before ``anchor`` (default: the current hour)
    span_hours: float = 24.0
    anchor: datetime | None = None
    consent_share_rate: float = 0.7
    consent_feed_rate: float = 0.6
    #: share of users who want a note when a shopper asks about a product they bought; None:
    #: the field is left out of consent events (and draws nothing, so older seeds keep their
    #: sequences)
    consent_questions_rate: float | None = None
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    producer: str = "loadgen"
    #: prepended to every generated id, so several runs can share topics without colliding
    id_prefix: str = ""


class LoadGenerator:
    def __init__(self, config: LoadConfig | None = None) -> None:
        self.config = config or LoadConfig()
        cfg = self.config
        anchor = cfg.anchor or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.anchor = anchor.astimezone(UTC)
        self.rng = random.Random(cfg.seed)
        self.user_ids = [f"{cfg.id_prefix}u{i}" for i in range(cfg.users)]
        self.product_ids = [f"{cfg.id_prefix}p{i}" for i in range(cfg.products)]
        self.first_names = {u: self.rng.choice(FIRST_NAMES) for u in self.user_ids}
        zipf = [1.0 / (rank**cfg.zipf_s) for rank in range(1, cfg.products + 1)]
        self._product_cum = list(itertools.accumulate(zipf))
        self._orders: list[tuple[str, str, list[str]]] = []  # order_id, user, products
        self._reviews: list[tuple[str, str, str]] = []  # review_id, user, product
        self._questions: list[tuple[str, str]] = []  # question_id, product
        self._counter = itertools.count()

    # --- helpers ----------------------------------------------------------------------------

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _time(self) -> datetime:
        back = self.rng.random() * self.config.span_hours * 3600
        return self.anchor - timedelta(seconds=back)

    def _envelope(self) -> dict:
        return {"event_id": self._uuid(), "occurred_at": self._time()}

    def product(self) -> str:
        return self.rng.choices(self.product_ids, cum_weights=self._product_cum)[0]

    def user(self) -> str:
        return self.rng.choice(self.user_ids)

    # --- the social graph -------------------------------------------------------------------

    def friendship_pairs(self) -> list[tuple[str, str]]:
        """Distinct unordered pairs from a Chung-Lu graph with Pareto-distributed weights."""
        cfg = self.config
        rng = random.Random(cfg.seed + 1)
        weights = [rng.paretovariate(cfg.degree_alpha) for _ in self.user_ids]
        cum = list(itertools.accumulate(weights))
        wanted = int(cfg.users * cfg.mean_friends / 2)
        pairs: set[tuple[str, str]] = set()
        # Sample endpoints proportionally to weight until enough distinct pairs exist.
        for _ in range(20):
            missing = wanted - len(pairs)
            if missing <= 0:
                break
            a_side = rng.choices(self.user_ids, cum_weights=cum, k=missing)
            b_side = rng.choices(self.user_ids, cum_weights=cum, k=missing)
            for a, b in zip(a_side, b_side, strict=True):
                if a != b:
                    pairs.add((a, b) if a < b else (b, a))
        return sorted(pairs)[:wanted] if len(pairs) > wanted else sorted(pairs)

    def setup_events(self, friendships: bool = True) -> Iterator[ev.Event]:
        """First names, initial consent and (optionally) every friendship."""
        cfg = self.config
        for user in self.user_ids:
            yield ev.UserProfileUpdated.create(
                {"user_id": user, "first_name": self.first_names[user]},
                producer=cfg.producer,
                **self._envelope(),
            )
            yield ev.PrivacySettingsChanged.create(
                self._consent_payload(user), producer=cfg.producer, **self._envelope()
            )
        if friendships:
            for a, b in self.friendship_pairs():
                yield ev.FriendshipAdded.create(
                    {"user_id": a, "friend_id": b}, producer=cfg.producer, **self._envelope()
                )

    # --- activity ---------------------------------------------------------------------------

    def activity_events(self, count: int) -> Iterator[ev.Event]:
        kinds = list(self.config.mix)
        cum = list(itertools.accumulate(self.config.mix[k] for k in kinds))
        for _ in range(count):
            kind = self.rng.choices(kinds, cum_weights=cum)[0]
            event = getattr(self, f"_{kind}")()
            if event is None:  # e.g. a refund before any purchase: buy instead
                event = self._purchase()
            yield event

    def _purchase(self) -> ev.Event:
        n = next(self._counter)
        order_id, user = f"{self.config.id_prefix}o{self.config.seed}-{n}", self.user()
        products = list(dict.fromkeys(self.product() for _ in range(1 + (self.rng.random() < 0.2))))
        self._orders.append((order_id, user, products))
        lines = [
            {"product_id": p, "quantity": self.rng.randint(1, 3), "unit_price": Decimal("9.99")}
            for p in products
        ]
        return ev.PurchaseCompleted.create(
            {"order_id": order_id, "user_id": user, "currency": "EUR", "lines": lines},
            producer=self.config.producer,
            **self._envelope(),
        )

    def _refund(self) -> ev.Event | None:
        if not self._orders:
            return None
        order_id, user, products = self.rng.choice(self._orders)
        lines = [{"product_id": p, "quantity": 3} for p in products]  # quantities are 1..3
        return ev.OrderRefunded.create(
            {
                "refund_id": f"{self.config.id_prefix}r{next(self._counter)}",
                "order_id": order_id,
                "user_id": user,
                "lines": lines,
            },
            producer=self.config.producer,
            **self._envelope(),
        )

    def _cancel(self) -> ev.Event | None:
        if not self._orders:
            return None
        order_id, user, _ = self.rng.choice(self._orders)
        return ev.OrderCancelled.create(
            {"order_id": order_id, "user_id": user},
            producer=self.config.producer,
            **self._envelope(),
        )

    def _review(self) -> ev.Event:
        review_id = f"{self.config.id_prefix}rv{next(self._counter)}"
        user, product = self.user(), self.product()
        self._reviews.append((review_id, user, product))
        return ev.ReviewPosted.create(
            {
                "review_id": review_id,
                "user_id": user,
                "product_id": product,
                "rating": self.rng.randint(1, 5),
            },
            producer=self.config.producer,
            **self._envelope(),
        )

    def _review_edit(self) -> ev.Event | None:
        if not self._reviews:
            return None
        review_id, user, product = self.rng.choice(self._reviews)
        return ev.ReviewEdited.create(
            {
                "review_id": review_id,
                "user_id": user,
                "product_id": product,
                "rating": self.rng.randint(1, 5),
            },
            producer=self.config.producer,
            **self._envelope(),
        )

    def _review_delete(self) -> ev.Event | None:
        if not self._reviews:
            return None
        review_id, user, product = self.rng.choice(self._reviews)
        return ev.ReviewDeleted.create(
            {"review_id": review_id, "user_id": user, "product_id": product},
            producer=self.config.producer,
            **self._envelope(),
        )

    def _share(self) -> ev.Event:
        return ev.ProductShared.create(
            {
                "share_id": f"{self.config.id_prefix}s{self.config.seed}-{next(self._counter)}",
                "user_id": self.user(),
                "product_id": self.product(),
                "channel": self.rng.choice(["link", "facebook", "x", "whatsapp", "email"]),
            },
            producer=self.config.producer,
            **self._envelope(),
        )

    def _consent_payload(self, user: str) -> dict:
        cfg = self.config
        payload = {
            "user_id": user,
            "share_purchases_with_friends": self.rng.random() < cfg.consent_share_rate,
            "show_in_activity_feed": self.rng.random() < cfg.consent_feed_rate,
        }
        if cfg.consent_questions_rate is not None:
            payload["notify_on_questions"] = self.rng.random() < cfg.consent_questions_rate
        return payload

    def _consent(self) -> ev.Event:
        return ev.PrivacySettingsChanged.create(
            self._consent_payload(self.user()), producer=self.config.producer, **self._envelope()
        )

    def _question(self) -> ev.Event:
        question_id = f"{self.config.id_prefix}q{self.config.seed}-{next(self._counter)}"
        product = self.product()
        self._questions.append((question_id, product))
        return ev.QuestionAsked.create(
            {
                "question_id": question_id,
                "product_id": product,
                "user_id": self.user(),
                "text": self.rng.choice(QUESTION_TEXTS),
            },
            producer=self.config.producer,
            **self._envelope(),
        )

    def _answer(self) -> ev.Event | None:
        if not self._questions:
            return None
        question_id, product = self.rng.choice(self._questions)
        # buyers answer more often than others: half the answers come from a user who bought it
        buyers = [u for _, u, products in self._orders[-500:] if product in products]
        user = self.rng.choice(buyers) if buyers and self.rng.random() < 0.5 else self.user()
        return ev.AnswerPosted.create(
            {
                "answer_id": f"{self.config.id_prefix}a{self.config.seed}-{next(self._counter)}",
                "question_id": question_id,
                "product_id": product,
                "user_id": user,
                "text": self.rng.choice(ANSWER_TEXTS),
            },
            producer=self.config.producer,
            **self._envelope(),
        )

    def erase_events(self, count: int) -> list[ev.Event]:
        """Erasure of ``count`` distinct users (for privacy scenarios)."""
        return [
            ev.UserErased.create({"user_id": u}, producer=self.config.producer, **self._envelope())
            for u in self.rng.sample(self.user_ids, count)
        ]
