"""A plain-Python reference model of badge-experiment figures (issue #18), computed from a list of
events, like :mod:`services.counters.referral_oracle` for referrals.

It restates the rules as directly as possible (no Redis, no incremental state, no arrival order),
so tests and tools (the simulator's end-to-end test, the results page's) can check what
``services/counters/experiments.lua`` keeps against it: feed it the same events (duplicates, any
order) and compare. Rules:

- an interaction (``badge.viewed``, ``badge.clicked``, ``badge.dismissed``) belongs to its
  experiment ``E`` and variant ``V``; one without an experiment or without a variant to the plain
  badge, ``E = "_"``, ``V = "badge"``. Its window is its ``attribution_window_s``, else 24 h. An
  event id counts once (the first copy; copies are equal);
- a user erased (``user.erased``, whenever it arrives) takes out every interaction whose viewer
  they are and all their purchases;
- a purchase line ``(o, p)`` counts while *kept*, as the counters say
  (:class:`~services.counters.oracle.Oracle`: not cancelled, quantity - refunds > 0), its buyer
  not erased;
- a kept line bought at ``t`` by user ``u`` (the purchase's visitor ``w``, if any) is attributed
  in ``E`` to the latest, by ``(ms, member)``, impression of ``p`` in ``E`` whose viewer is ``u``
  or whose visitor is ``w``, made at ``ms`` with ``ms <= t <= ms + window`` (both ends included);
  ``member`` is ``{E}|{V}|{visitor}|{window s}|{event id}``. That impression's variant gets the
  purchase and its visitor the credit;
- per ``(E, V)``: *visitors* are the distinct visitors with an impression (each at their first),
  *impressions*, *clicks*, *dismissals* the interactions, *purchases* the attributed lines,
  *conversions* the distinct credited visitors (each at their earliest attributed purchase), the
  *conversion rate* conversions / visitors; the same per product (but visitors and conversions).

Figures are exact and order-independent by construction, which is what the store must match.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from contracts import events as ev
from contracts.views import DEFAULT_ATTRIBUTION_WINDOW_H, NO_EXPERIMENT, NO_EXPERIMENT_VARIANT
from services.counters.oracle import Oracle

KINDS: dict[type, str] = {
    ev.BadgeViewed: "viewed",
    ev.BadgeClicked: "clicked",
    ev.BadgeDismissed: "dismissed",
}


def _ms(event: ev.Event) -> int:
    return int(event.occurred_at.timestamp() * 1000)


@dataclass(frozen=True)
class Interaction:
    kind: str  # viewed | clicked | dismissed
    event_id: str
    experiment: str
    variant: str
    visitor: str
    viewer: str | None
    product: str
    window_s: int
    ms: int

    @property
    def member(self) -> str:
        """Orders impressions made at the same ms (and names them in the store)."""
        return f"{self.experiment}|{self.variant}|{self.visitor}|{self.window_s}|{self.event_id}"

    def covers(self, ms: int) -> bool:
        return self.ms <= ms <= self.ms + self.window_s * 1000


@dataclass(frozen=True)
class Purchase:
    order: str
    user: str
    ms: int
    visitor: str | None
    products: tuple[str, ...]


@dataclass(frozen=True)
class Attribution:
    order: str
    product: str
    experiment: str
    variant: str
    visitor: str  # credited
    ms: int  # the purchase's
    impression: str  # the event id of the impression that names it


@dataclass(frozen=True)
class Funnel:
    impressions: int = 0
    clicks: int = 0
    dismissals: int = 0
    purchases: int = 0


@dataclass(frozen=True)
class Figures:
    visitors: int
    impressions: int
    clicks: int
    dismissals: int
    purchases: int
    conversions: int

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.visitors if self.visitors else 0.0


class ExperimentOracle:
    def __init__(self, events: list[ev.Event], base: Oracle | None = None) -> None:
        erased = {e.payload.user_id for e in events if isinstance(e, ev.UserErased)}
        #: every experiment any interaction names (an erased viewer's too)
        self.experiments: set[str] = set()
        #: event id -> the interaction, for those that count
        self.interactions: dict[str, Interaction] = {}
        for e in events:
            kind = KINDS.get(type(e))
            if kind is None:
                continue
            p = e.payload
            plain = p.experiment_id is None or p.variant is None
            experiment = NO_EXPERIMENT if plain else p.experiment_id
            self.experiments.add(experiment)
            if p.viewer_id in erased or str(e.event_id) in self.interactions:
                continue
            self.interactions[str(e.event_id)] = Interaction(
                kind=kind,
                event_id=str(e.event_id),
                experiment=experiment,
                variant=NO_EXPERIMENT_VARIANT if plain else p.variant,
                visitor=p.visitor_id,
                viewer=p.viewer_id,
                product=p.product_id,
                window_s=p.attribution_window_s or DEFAULT_ATTRIBUTION_WINDOW_H * 3600,
                ms=_ms(e),
            )
        #: order -> the purchase, buyers not erased (its first event: copies are equal)
        self.purchases: dict[str, Purchase] = {}
        for e in events:
            if isinstance(e, ev.PurchaseCompleted) and e.payload.user_id not in erased:
                p = e.payload
                self.purchases.setdefault(
                    p.order_id,
                    Purchase(
                        order=p.order_id,
                        user=p.user_id,
                        ms=_ms(e),
                        visitor=p.visitor_id,
                        products=tuple(dict.fromkeys(line.product_id for line in p.lines)),
                    ),
                )
        base = base or Oracle(events)
        kept = {(o, p) for o, p, u, _ in base.kept if u not in erased}
        views: dict[str, list[Interaction]] = defaultdict(list)
        for i in self.interactions.values():
            if i.kind == "viewed":
                views[i.product].append(i)
        #: (order, product, experiment) -> where the kept line is attributed
        self.attributions: dict[tuple[str, str, str], Attribution] = {}
        for o, p in sorted(kept):
            purchase = self.purchases[o]
            latest: dict[str, Interaction] = {}
            for i in views[p]:
                mine = i.viewer == purchase.user or (
                    purchase.visitor is not None and i.visitor == purchase.visitor
                )
                if mine and i.covers(purchase.ms):
                    other = latest.get(i.experiment)
                    if other is None or (i.ms, i.member) > (other.ms, other.member):
                        latest[i.experiment] = i
            for experiment, i in latest.items():
                self.attributions[(o, p, experiment)] = Attribution(
                    o, p, experiment, i.variant, i.visitor, purchase.ms, i.event_id
                )

    # --- per experiment and variant -----------------------------------------------------------

    def _of(self, experiment: str, variant: str | None = None, kind: str | None = None):
        return [
            i
            for i in self.interactions.values()
            if i.experiment == experiment
            and (variant is None or i.variant == variant)
            and (kind is None or i.kind == kind)
        ]

    def variants(self, experiment: str) -> list[str]:
        """The variants with an interaction or an attribution in the experiment, sorted."""
        return sorted(
            {i.variant for i in self._of(experiment)}
            | {a.variant for a in self.attributions.values() if a.experiment == experiment}
        )

    def first_seen(self, experiment: str, variant: str) -> dict[str, int]:
        """Visitor -> their first impression in the variant (ms): the chart's visitors."""
        out: dict[str, int] = {}
        for i in self._of(experiment, variant, "viewed"):
            out[i.visitor] = min(out.get(i.visitor, i.ms), i.ms)
        return out

    def converted(self, experiment: str, variant: str) -> dict[str, int]:
        """Credited visitor -> their earliest attributed purchase in the variant (ms)."""
        out: dict[str, int] = {}
        for a in self.attributions.values():
            if (a.experiment, a.variant) == (experiment, variant):
                out[a.visitor] = min(out.get(a.visitor, a.ms), a.ms)
        return out

    def figures(self, experiment: str, variant: str) -> Figures:
        counts = self.products(experiment)
        mine = [f for (v, _), f in counts.items() if v == variant]
        return Figures(
            visitors=len(self.first_seen(experiment, variant)),
            impressions=sum(f.impressions for f in mine),
            clicks=sum(f.clicks for f in mine),
            dismissals=sum(f.dismissals for f in mine),
            purchases=sum(f.purchases for f in mine),
            conversions=len(self.converted(experiment, variant)),
        )

    def products(self, experiment: str) -> dict[tuple[str, str], Funnel]:
        """(variant, product) -> the funnel, for pairs with anything in it."""
        counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        names = {"viewed": "impressions", "clicked": "clicks", "dismissed": "dismissals"}
        for i in self._of(experiment):
            counts[(i.variant, i.product)][names[i.kind]] += 1
        for a in self.attributions.values():
            if a.experiment == experiment:
                counts[(a.variant, a.product)]["purchases"] += 1
        return {k: Funnel(**c) for k, c in counts.items()}
