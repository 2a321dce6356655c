"""The simulator's badge-experiment visitors (issue #18): an A/B experiment whose true effect is
known, driven through the real APIs, so the insights page can be watched converging on the
answer (``make run``) and a test can check the reported intervals against the truth
(tests/integration/test_experiments_e2e.py).

- :class:`Design`: the experiment the simulator defines with ``POST /v1/experiments`` (service
  token): by default control (no badge) / friends (``["friends", "bought"]``) / counts
  (``["bought", "reviews"]``), split 34/33/33, over a few demo products.
- :class:`Truth`: what visitors really do. A visitor of variant V buys with probability
  ``base_rate * (1 + effects[V])`` (the control's effect is 0); visitors of a variant with a badge
  click it and dismiss it sometimes; a few beacons are sent twice (duplicates the counts must
  ignore); ``lost`` drops a share of one variant's beacons on purpose (a sample-ratio mismatch,
  as when a variant's beacons are blocked) for demos and tests.
- :func:`visits`: the visitors, drawn from one seeded generator in a fixed number of draws each
  (variant by the split, product, time on the page, click, dismiss, buy, lost, resent), so a
  seed gives the same visitors whatever the experiment is called and however the requests
  interleave.
- :class:`ExperimentTraffic`: each visitor as the widget and the shop would make it: a random
  pseudonymous visitor id, ``GET /v1/experiments/{id}/assignment`` (public), one beacon
  (``POST /v1/beacons``: the impression, maybe a click and a dismissal, ``at`` up to
  ``max_dwell_s`` ago) and, when it buys, an order (``POST /v1/orders``, service token) of a
  guest user with ``visitor_id``: the purchase happens after the impression, within the window.
  :attr:`ExperimentTraffic.outcomes` is the ledger of what the services accepted (a test's
  oracle); :meth:`~ExperimentTraffic.run` paces visitors for the demo.
- :func:`run_demo` (``socialproof simulate``, so ``make run``): :class:`DemoExperiment`, 2
  visitors/s over products p4-p7, control buying 20 %, friends +20 %, counts 0. Its id names its
  truth (another truth is another experiment; the demo's earlier ones are stopped) and its title
  states it, as does ``make run``'s console. The page says "keep collecting" until every
  variant has the ~2,000 visitors that a 20 % effect needs at a 20 % base rate (the results'
  figure, seen in a dev stack), about 50 min at 2/s; there friends is found with 80 % power.

Why the visitor id is chosen *for* the drawn variant: assignment is a hash of (experiment,
visitor) (the contract: ``sha256("{experiment}|{visitor}")``'s first 8 bytes mod 10,000 against
the split), so ids are drawn (from a generator seeded by the seed and the experiment id) until
one hashes into the variant the seeded draw gave: about 3 tries. The split still comes out
multinomial, exactly as hashing random ids would give, but the outcome of a seed no longer
depends on the experiment's id, which a test must make unique per run. The notifier's answer is
what the beacon carries; a disagreement with the contract is counted (:attr:`misassigned`).

It never raises on a refusal: a 4xx is logged (the first of a kind, then every 100th) and the
visitor ends there; 429, 5xx and connection errors are retried with a growing pause. Re-sending
is safe: beacon event ids are deterministic, orders carry an Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer

log = logging.getLogger("tools.simulate.experiments")

#: the default experiment's variants (the first is the control)
VARIANTS: list[dict[str, Any]] = [
    {"name": "control", "badge": "none"},
    {"name": "friends", "elements": ["friends", "bought"]},
    {"name": "counts", "elements": ["bought", "reviews"]},
]
SPLIT = [34, 33, 33]
#: the demo experiment's products (not the first demo products, whose usual badges the
#: storefront's first screen shows) and the prefix of its id
DEMO_PRODUCTS = ["p4", "p5", "p6", "p7"]
DEMO_PREFIX = "demo-badges-"
DEFAULT_EFFECTS = "friends=0.2,counts=0"
BUCKETS = 10_000
RETRIES = 8


# --- what is simulated -------------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    """The experiment as ``POST /v1/experiments`` gets it."""

    experiment_id: str
    products: list[str]
    variants: list[dict[str, Any]] = field(default_factory=lambda: [dict(v) for v in VARIANTS])
    split: list[int] = field(default_factory=lambda: list(SPLIT))
    minimum_detectable_effect: float = 0.2
    title: str = ""

    @property
    def names(self) -> list[str]:
        return [v["name"] for v in self.variants]

    def shows_badge(self, variant: str) -> bool:
        return next(v for v in self.variants if v["name"] == variant).get("badge") != "none"

    def body(self) -> dict[str, Any]:
        return {"id": self.experiment_id, "title": self.title, "products": self.products,
                "variants": self.variants, "split": self.split,
                "minimum_detectable_effect": self.minimum_detectable_effect}


@dataclass(frozen=True)
class Truth:
    """How visitors behave: the answer the experiment should find."""

    base_rate: float = 0.2
    #: relative effect on the purchase probability per variant (absent: 0)
    effects: Mapping[str, float] = field(default_factory=dict)
    click_rate: float = 0.1
    dismiss_rate: float = 0.03
    resend_rate: float = 0.02
    #: share of a variant's beacons lost (sample-ratio mismatch on purpose)
    lost: Mapping[str, float] = field(default_factory=dict)
    max_dwell_s: float = 600.0

    def buy_rate(self, variant: str) -> float:
        return min(1.0, self.base_rate * (1 + self.effects.get(variant, 0.0)))

    def describe(self, design: Design) -> str:
        """'control buys 20.0 %; friends +20 % (24.0 %), counts +0 % (20.0 %)' (+ lost)."""
        control, others = design.names[0], design.names[1:]
        text = f"{control} buys {100 * self.buy_rate(control):.1f} %; " + ", ".join(
            f"{v} {100 * self.effects.get(v, 0.0):+.0f} % ({100 * self.buy_rate(v):.1f} %)"
            for v in others
        )
        lost = ", ".join(f"{100 * share:.0f} % of {v}'s" for v, share in self.lost.items())
        return text + (f"; {lost} beacons lost on purpose" if lost else "")


def parse_shares(text: str, option: str = "--experiment-effects") -> dict[str, float]:
    """'friends=0.2,counts=0' -> {'friends': 0.2, 'counts': 0.0}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected name=number pairs, got {part!r}", param_hint=option)
    return out


@dataclass(frozen=True)
class Visit:
    """One simulated visitor, as drawn (before any request)."""

    n: int
    variant: str
    product_id: str
    dwell_s: float  # the impression was this long before the visitor's purchase (or leaving)
    click: bool
    dismiss: bool
    buys: bool
    lost: bool  # the beacon never arrives
    resend: bool  # the beacon arrives twice


def visits(design: Design, truth: Truth, seed: int) -> Iterator[Visit]:
    """The visitors of ``seed``, for ever (eight draws each, whatever they decide)."""
    rng = random.Random(seed)
    n = 0
    while True:
        variant = rng.choices(design.names, weights=design.split)[0]
        product = design.products[int(rng.random() * len(design.products))]
        dwell = 1.0 + rng.random() * max(0.0, truth.max_dwell_s - 1.0)
        click, dismiss, buy, lost, resend = (rng.random() for _ in range(5))
        badge = design.shows_badge(variant)
        yield Visit(
            n=n,
            variant=variant,
            product_id=product,
            dwell_s=dwell,
            click=badge and click < truth.click_rate,
            dismiss=badge and dismiss < truth.dismiss_rate,
            buys=buy < truth.buy_rate(variant),
            lost=lost < truth.lost.get(variant, 0.0),
            resend=resend < truth.resend_rate,
        )
        n += 1


def bucket(experiment_id: str, visitor_id: str) -> int:
    """The visitor's bucket (the assignment contract, restated here so that the notifier's
    answers are checked against it, not against its own code)."""
    digest = hashlib.sha256(f"{experiment_id}|{visitor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def variant_of(design: Design, visitor_id: str) -> str:
    b, upper = bucket(design.experiment_id, visitor_id), 0
    for name, share in zip(design.names, design.split, strict=True):
        upper += share * BUCKETS // 100
        if b < upper:
            return name
    return design.names[-1]


def visitor_in(design: Design, variant: str, rng: random.Random) -> str:
    """A random visitor id (16 bytes, base64url, as the widget makes them) in ``variant``."""
    while True:
        visitor = base64.urlsafe_b64encode(rng.randbytes(16)).rstrip(b"=").decode()
        if variant_of(design, visitor) == variant:
            return visitor


def guest_of(visitor_id: str) -> str:
    """The guest user an anonymous visitor buys as (user ids cannot hold ``_``)."""
    return "guest-" + hashlib.blake2b(visitor_id.encode(), digest_size=8).hexdigest()


def _at(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds")


# --- sending it --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the services accepted of one visit."""

    visit: Visit
    visitor_id: str
    variant: str  # as the notifier assigned it
    seen: bool = False  # the beacon was accepted (202)
    clicks: int = 0
    dismissals: int = 0
    order_id: str | None = None
    user_id: str = ""
    refunded: bool = False


class ExperimentTraffic:
    """Visitors of one experiment through the notifier and orders APIs."""

    def __init__(
        self,
        design: Design,
        truth: Truth,
        *,
        notifier: str,
        orders: str,
        token: str,
        seed: int,
        prices: Mapping[str, str] | None = None,
        salt: str = "",
        concurrency: int = 16,
        keep: bool = True,
        ask_assignment: bool = True,
    ) -> None:
        self.design, self.truth, self.seed = design, truth, seed
        self.notifier, self.orders = notifier.rstrip("/"), orders.rstrip("/")
        self.prices = dict(prices or {})
        limits = httpx.Limits(max_connections=concurrency)
        timeout = httpx.Timeout(10.0)
        #: the widget's calls carry no credentials (a bearer token on a beacon names a viewer)
        self.public = httpx.AsyncClient(timeout=timeout, limits=limits)
        self.shop = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=timeout, limits=limits
        )
        self.slots = asyncio.Semaphore(concurrency)
        self._visits = visits(design, truth, seed)
        self._ids = random.Random(f"{seed}|{design.experiment_id}|{salt}")
        self.keep = keep
        #: False: skip the widget's assignment request and send the drawn variant (which the
        #: visitor id hashes to); the notifier still refuses a beacon whose variant is not the
        #: visitor's assignment (422), so the contract is checked either way, with fewer requests
        self.ask_assignment = ask_assignment
        self.outcomes: list[Outcome] = []
        self.answered: Counter[tuple[str, str, int]] = Counter()
        self.refused: Counter[tuple[str, str, int]] = Counter()
        self.tally: Counter[str] = Counter()  # visitors, seen, orders per variant (for the log)
        self.misassigned = 0
        self.failed = 0

    async def close(self) -> None:
        await self.public.aclose()
        await self.shop.aclose()

    async def request(
        self, client: httpx.AsyncClient, method: str, url: str, what: str, **kwargs: Any
    ) -> httpx.Response | None:
        """The answer (any status below 500 but 429), retried on trouble; None if it lasts."""
        pause = 0.2
        for attempt in range(RETRIES):
            try:
                response = await client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                self.answered[(method, what, response.status_code)] += 1
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 400:
                        self._refused(method, what, response)
                    return response
                problem = f"{response.status_code} {response.text[:200]}"
            if attempt == RETRIES - 1:
                break
            log.warning("service trouble; retrying", extra={"request": f"{method} {url}",
                                                            "error": problem, "pause_s": pause})
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)
        self.failed += 1
        return None

    def _refused(self, method: str, what: str, response: httpx.Response) -> None:
        kind = (method, what, response.status_code)
        self.refused[kind] += 1
        if self.refused[kind] % 100 == 1:
            log.warning("request refused", extra={"request": f"{method} {what}",
                                                  "status": response.status_code,
                                                  "body": response.text[:300],
                                                  "times": self.refused[kind]})

    async def start(self) -> dict[str, Any] | None:
        """Define the experiment (201; 200 when the same definition exists already)."""
        url = f"{self.notifier}/v1/experiments"
        answer = await self.request(self.shop, "POST", url, "/v1/experiments",
                                    json=self.design.body())
        if answer is None or answer.status_code >= 300:
            return None
        return answer.json()

    async def stop_others(self, prefix: str) -> list[str]:
        """Stop the active experiments whose id starts with ``prefix`` other than this one (the
        demo's earlier truths), so that the storefront shows this one. Returns their ids."""
        stopped: list[str] = []
        cursor: str | None = None
        while True:
            params = {"status": "active", "limit": 100, **({"cursor": cursor} if cursor else {})}
            answer = await self.request(self.shop, "GET", f"{self.notifier}/v1/experiments",
                                        "/v1/experiments", params=params)
            if answer is None or answer.status_code != 200:
                return stopped
            page = answer.json()
            for item in page["items"]:
                eid = item["id"]
                if eid.startswith(prefix) and eid != self.design.experiment_id:
                    url = f"{self.notifier}/v1/experiments/{eid}/stop"
                    await self.request(self.shop, "POST", url, "/v1/experiments/{id}/stop")
                    stopped.append(eid)
            cursor = page.get("next_cursor")
            if not cursor:
                return stopped

    def arrive(self) -> Outcome:
        """The next visitor and its id (drawn in order, before any request interleaves)."""
        v = next(self._visits)
        visitor = visitor_in(self.design, v.variant, self._ids)
        return Outcome(visit=v, visitor_id=visitor, variant=v.variant, user_id=guest_of(visitor))

    async def visit(self, out: Outcome) -> Outcome:
        """One visitor: assignment, beacon (unless lost; twice when resent), maybe an order."""
        d, v, visitor = self.design, out.visit, out.visitor_id
        async with self.slots:
            if self.ask_assignment:
                url = f"{self.notifier}/v1/experiments/{d.experiment_id}/assignment"
                answer = await self.request(self.public, "GET", url,
                                            "/v1/experiments/{id}/assignment",
                                            params={"visitor_id": visitor})
                if answer is None or answer.status_code != 200:
                    return self._done(out)
                out.variant = answer.json()["variant"]
                self.misassigned += out.variant != v.variant
            now = datetime.now(UTC)
            seen_at = now - timedelta(seconds=v.dwell_s)
            event = {"product_id": v.product_id, "experiment_id": d.experiment_id,
                     "variant": out.variant}
            events = [{"kind": "impression", "at": _at(seen_at), **event}]
            if v.click:
                events.append({"kind": "click", "at": _at(seen_at + timedelta(seconds=1)),
                               **event})
            if v.dismiss:
                events.append({"kind": "dismiss", "at": _at(seen_at + timedelta(seconds=2)),
                               **event})
            beacon = {"visitor_id": visitor, "events": events}
            for _ in range(0 if v.lost else 1 + v.resend):
                # text/plain, as navigator.sendBeacon sends it
                sent = await self.request(
                    self.public, "POST", f"{self.notifier}/v1/beacons", "/v1/beacons",
                    content=json.dumps(beacon).encode(),
                    headers={"Content-Type": "text/plain;charset=UTF-8"},
                )
                if sent is not None and sent.status_code == 202:
                    out.seen = True
                    out.clicks, out.dismissals = int(v.click), int(v.dismiss)
            if v.buys:
                await self._buy(out)
        return self._done(out)

    async def _buy(self, out: Outcome) -> None:
        line = {"product_id": out.visit.product_id, "quantity": 1,
                "unit_price": self.prices.get(out.visit.product_id, "19.99")}
        body = {"user_id": out.user_id, "currency": "EUR", "lines": [line],
                "visitor_id": out.visitor_id}
        placed = await self.request(self.shop, "POST", f"{self.orders}/v1/orders", "/v1/orders",
                                    json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        if placed is not None and placed.status_code == 201:
            out.order_id = placed.json()["order_id"]

    def _done(self, out: Outcome) -> Outcome:
        self.tally[f"{out.variant}.visitors"] += 1
        self.tally[f"{out.variant}.seen"] += out.seen
        self.tally[f"{out.variant}.orders"] += out.order_id is not None
        if self.keep:
            self.outcomes.append(out)
        return out

    async def refund(self, out: Outcome) -> bool:
        """Refund the visitor's order whole."""
        url = f"{self.orders}/v1/orders/{out.order_id}/refunds"
        answer = await self.request(self.shop, "POST", url, "/v1/orders/{id}/refunds", json={},
                                    headers={"Idempotency-Key": str(uuid.uuid4())})
        out.refunded = answer is not None and answer.status_code == 201
        return out.refunded

    async def drive(self, count: int) -> list[Outcome]:
        """The next ``count`` visitors, as fast as the services take them (bounded)."""
        arrived = [self.arrive() for _ in range(count)]
        return list(await asyncio.gather(*(self.visit(out) for out in arrived)))

    async def run(self, rate: float, duration_s: float | None = None,
                  visitors: int | None = None) -> None:
        """``rate`` visitors per second (paced by a clock) until ``duration_s`` or ``visitors``."""
        loop = asyncio.get_running_loop()
        next_at, last_report = loop.time(), loop.time()
        stop_at = None if duration_s is None else loop.time() + duration_s
        tasks: set[asyncio.Task] = set()
        started = 0
        while (stop_at is None or loop.time() < stop_at) and (visitors is None
                                                              or started < visitors):
            next_at += 1.0 / rate
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()  # fell behind: no burst to catch up
            if len(tasks) < 64:  # services stuck: skip rather than pile up
                task = asyncio.create_task(self.visit(self.arrive()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                started += 1
            if loop.time() - last_report > 60:
                last_report = loop.time()
                log.info("badge experiment visitors", extra={
                    "experiment_id": self.design.experiment_id,
                    "truth": self.truth.describe(self.design), **self.tally})
        if tasks:
            await asyncio.wait(tasks)


# --- the demo (socialproof simulate, make run) -------------------------------------------------

ExperimentRate = Annotated[float, typer.Option(
    min=0, envvar="SOCIALPROOF_SIMULATE_EXPERIMENT_RATE",
    help="badge-experiment visitors per second (beside --rate); 0 = no experiment")]
ExperimentEffects = Annotated[str, typer.Option(
    help="true relative effect on buying per variant (control, friends, counts), e.g. "
    "friends=0.2,counts=0")]
ExperimentBaseRate = Annotated[float, typer.Option(
    min=0.001, max=1, help="the control's purchase probability per visitor")]
ExperimentLost = Annotated[str, typer.Option(
    help="share of a variant's beacons lost on purpose (sample-ratio mismatch), e.g. control=0.3")]
ExperimentVisitors = Annotated[int | None, typer.Option(
    min=1, help="stop the experiment's traffic after this many visitors (default: never)")]


@dataclass(frozen=True)
class DemoExperiment:
    """The options of ``socialproof simulate`` for the experiment's visitors."""

    rate: float = 2.0
    effects: str = DEFAULT_EFFECTS
    base_rate: float = 0.2
    lost: str = ""
    visitors: int | None = None

    def truth(self) -> Truth:
        effects, lost = parse_shares(self.effects), parse_shares(self.lost, "--experiment-lost")
        names = [v["name"] for v in VARIANTS]
        for option, given in (("--experiment-effects", effects), ("--experiment-lost", lost)):
            if unknown := sorted(set(given) - set(names)):
                raise typer.BadParameter(f"no variant {unknown[0]} (the variants: {names})",
                                         param_hint=option)
        return Truth(base_rate=self.base_rate, effects=effects, lost=lost)

    def design(self) -> Design:
        """The demo experiment; its id names its truth, so another truth is another
        experiment (a definition never changes) and a restart carries on with the same one."""
        truth = self.truth()
        spec = repr((DEMO_PRODUCTS, VARIANTS, SPLIT, truth.base_rate,
                     sorted(truth.effects.items()), sorted(truth.lost.items())))
        digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
        draft = Design(DEMO_PREFIX + digest, list(DEMO_PRODUCTS))
        return Design(draft.experiment_id, draft.products,
                      title=f"Simulated truth: {truth.describe(draft)}")


async def run_demo(
    demo: DemoExperiment, *, notifier: str, orders: str, token: str, seed: int,
    prices: Mapping[str, str], duration_s: float | None = None,
) -> ExperimentTraffic | None:
    """The demo experiment: define it (stopping the demo's earlier ones), then its visitors at
    ``demo.rate`` per second. Visitor ids are new each run (a restart brings new visitors). When
    someone stopped this truth's experiment, the next free ``-2``, ``-3``… id is started."""
    first = demo.design()
    for attempt in range(1, 1000):
        design = first if attempt == 1 else replace(
            first, experiment_id=f"{first.experiment_id}-{attempt}")
        traffic = ExperimentTraffic(design, demo.truth(), notifier=notifier, orders=orders,
                                    token=token, seed=seed, prices=prices, salt=uuid.uuid4().hex,
                                    keep=False)
        try:
            started = await traffic.start()
            if started is None:
                return None  # the notifier refused it: logged by request()
            if started.get("status") == "stopped":
                continue
            log.info("badge experiment running", extra={
                "experiment_id": design.experiment_id, "truth": traffic.truth.describe(design),
                "insights": f"{traffic.notifier}/insights"})
            if stopped := await traffic.stop_others(DEMO_PREFIX):
                log.info("earlier demo experiments stopped", extra={"stopped": stopped})
            await traffic.run(demo.rate, duration_s, demo.visitors)
            return traffic
        finally:
            await traffic.close()
    return None


def demo_note(env: Mapping[str, str]) -> str:
    """What ``make run``'s console says about the demo experiment (its truth), for a simulator
    started with ``env`` and the default options."""
    demo = DemoExperiment()
    if float(env.get("SOCIALPROOF_SIMULATE_EXPERIMENT_RATE", demo.rate)) <= 0:
        return ""
    design = demo.design()
    return (f"; badge experiment {design.experiment_id}, truth: "
            f"{demo.truth().describe(design)} (watch it converge on the insights page)")


def demo_traffic(
    demo: DemoExperiment | None, notifier: str | None, orders: str, token: str, seed: int,
    duration_s: float | None,
) -> list[Awaitable[ExperimentTraffic | None]]:
    """What ``socialproof simulate`` runs beside its other traffic: the demo experiment, unless
    it is off (no options, rate 0, or no notifier to send beacons to)."""
    if demo is None or demo.rate <= 0 or notifier is None:
        return []
    from tools.simulate_world import DEMO_PRODUCTS as CATALOG

    prices = {d["id"]: d["price"] for d in CATALOG}
    return [run_demo(demo, notifier=notifier, orders=orders, token=token, seed=seed,
                     prices=prices, duration_s=duration_s)]
