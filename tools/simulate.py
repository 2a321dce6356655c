"""The traffic simulator: realistic shop traffic through the public write APIs, so the demo
storefront is alive on first open. ``make run`` starts it; by hand::

    socialproof simulate                     # 5 events/s after a warm-up, until Ctrl-C
    socialproof simulate --rate 20 --seed 7  # busier, different (still deterministic) traffic
    socialproof simulate --rate 0            # only set up the demo data and the warm-up, then exit

What it does, with the service token (``SOCIALPROOF_SERVICE_TOKEN``) against the services on
``SOCIALPROOF_{CATALOG,ORDERS,SOCIAL}_PORT`` (or ``--catalog-url`` …):

1. set-up: the demo catalog (:data:`DEMO_PRODUCTS`, :mod:`tools.simulate_world`), users with
   first names, their privacy choices (most opt in, as the demo data should) and a heavy-tailed
   friendship graph; the best-connected users are the demo storefront's viewers
   (:func:`demo_catalog`);
2. warm-up: ``--warmup`` events as fast as the services take them (while the friendships are
   still being sent), so counters are above the widget's thresholds when the page opens;
3. then ``--rate`` events per second: purchases (Zipf-popular products), refunds, reviews and
   edits, shares, consent changes.

Share to unlock (issue #17, :mod:`tools.simulate_referrals`): the set-up defines the demo's
promotions at the catalog, every share's answer gives a link token, and about a third of the
purchases arrive through a friend's link (``referral``), so "bought through friends' shares"
and sharers' progress move too.

Badge experiments (issue #18, :mod:`tools.simulate_experiments`): beside ``--rate``, visitors of
an A/B experiment on badges whose true effect is known (``--experiment-effects``), so the
insights page shows it converging on the answer (the experiment's title states the truth).

The world and the event sequence come from :mod:`tools.loadgen` (deterministic by seed;
``SOCIALPROOF_DEMO_SEED`` is also what the demo storefront uses to pick its viewers); each
generated event is turned into the API call that makes the services emit it. It never stops on
errors: a 4xx is logged and skipped, a 5xx / 429 / connection error is logged and followed by a
back-off (longer each time, reset on success).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from contracts import events as ev
from tools.loadgen import LoadConfig, LoadGenerator
from tools.simulate_experiments import (
    DemoExperiment,
    ExperimentBaseRate,
    ExperimentEffects,
    ExperimentLost,
    ExperimentRate,
    ExperimentVisitors,
    demo_traffic,
)
from tools.simulate_referrals import Referrals, promotion_bodies
from tools.simulate_world import (
    DEFAULT_USERS,
    DEMO_PRODUCTS,
    DEMO_VIEWERS,
    demo_config,
    write_demo_catalog,
)
from tools.simulate_world import demo_catalog as demo_catalog  # re-exported: the demo world

log = logging.getLogger("tools.simulate")

REVIEW_TEXTS = {
    5: "Love it, would buy again.",
    4: "Very good, small nits.",
    3: "Does the job.",
    2: "Expected more.",
    1: "Not for me.",
}


def _shape(url: str) -> str:
    """'http://h/v1/users/u7/friends/u9' -> '/v1/users/{id}/friends/{id}' (for counting)."""
    return "/".join(
        seg if not seg or seg.isalpha() or seg == "v1" else "{id}"
        for seg in httpx.URL(url).path.split("/")
    )


# --- talking to the services ----------------------------------------------------------------------


@dataclass
class Targets:
    catalog: str
    orders: str
    social: str
    token: str
    notifier: str | None = None  # the badge experiment's visitors (beacons) go there


class Simulator:
    """Turns the load generator's contract events into the API calls that cause them."""

    def __init__(
        self,
        targets: Targets,
        config: LoadConfig,
        concurrency: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        promotions_at: datetime | None = None,
    ) -> None:
        self.targets = targets
        #: the demo promotions start an hour before this (default: when the set-up runs)
        self.promotions_at = promotions_at
        self.gen = LoadGenerator(config)
        self.rng = random.Random(config.seed + 2)  # review texts
        self.client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {targets.token}"},
            timeout=httpx.Timeout(10.0),
            limits=httpx.Limits(max_connections=concurrency * 2),
            transport=transport,
        )
        self.slots = asyncio.Semaphore(concurrency)
        self.order_ids: dict[str, str] = {}  # the generator's order id -> the service's
        self.question_ids: dict[str, str] = {}  # the generator's question id -> the service's
        self.placed: list[str] = []  # the services' ids of the latest accepted orders
        self.sent = 0
        self.failed = 0
        self.backoff = 0.0
        #: (method, route, status) -> how many answers: what the services made of our calls
        self.answered: Counter[tuple[str, str, int]] = Counter()
        self.refused: Counter[tuple[str, str, int]] = Counter()
        self._activity = self.gen.activity_events(2**62)  # lazily, for ever
        self._friendships: list[ev.Event] = []
        self.referrals = Referrals(config.seed + 3)  # share links, and purchases through them
        self.referred = 0  # orders placed with a referral

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self,
        method: str,
        url: str,
        body: dict | None = None,
        tolerate: tuple[int, ...] = (),
        **headers: str,
    ) -> Any:
        """One request; never raises. Returns the JSON body of a 2xx, else None (also for the
        statuses in ``tolerate``, which are expected answers, neither refusals nor trouble)."""
        async with self.slots:
            if self.backoff:
                await asyncio.sleep(self.backoff)
            try:
                response = await self.client.request(method, url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                self._trouble(f"{method} {url}: {type(exc).__name__}: {exc}")
                return None
        self.sent += 1
        self.answered[(method, _shape(url), response.status_code)] += 1
        if response.status_code < 300 or response.status_code in tolerate:
            self.backoff = 0.0
            if response.status_code >= 300:
                return None
            return response.json() if response.content else {}
        if response.status_code >= 500 or response.status_code == 429:
            self._trouble(f"{method} {url}: {response.status_code} {response.text[:200]}")
        else:  # this request was refused: skip it and carry on
            self.failed += 1
            self._log_refused(method, url, response)
        return None

    def _log_refused(self, method: str, url: str, response: httpx.Response) -> None:
        """Logs the first refusal of each kind, then every 100th (a missing endpoint would
        otherwise log every call)."""
        kind = (method, _shape(url), response.status_code)
        self.refused[kind] += 1
        if self.refused[kind] % 100 == 1:
            log.warning(
                "request refused",
                extra={
                    "request": f"{method} {url}",
                    "status": response.status_code,
                    "body": response.text[:300],
                    "times": self.refused[kind],
                },
            )

    def _trouble(self, what: str) -> None:
        self.failed += 1
        self.backoff = min(max(self.backoff * 2, 0.5), 10.0)
        log.warning(
            "service trouble; backing off", extra={"error": what, "backoff_s": self.backoff}
        )

    def _key(self) -> str:
        # Random per run, not by seed: a restarted `make run` replays the same seeded traffic,
        # and seeded keys made the services answer it from their idempotency records (24 h)
        # instead of taking new orders, so the demo stood still after a restart.
        return str(uuid.uuid4())

    async def send(self, event: ev.Event) -> None:
        """The API call that makes the services emit ``event`` (ids are the services' own)."""
        t, p = self.targets, event.payload
        match event:
            case ev.UserProfileUpdated():
                await self.call(
                    "PUT", f"{t.social}/v1/users/{p.user_id}/profile", {"first_name": p.first_name}
                )
            case ev.PrivacySettingsChanged():
                privacy = {
                    "share_purchases_with_friends": p.share_purchases_with_friends,
                    "show_in_activity_feed": p.show_in_activity_feed,
                }
                if p.notify_on_questions is not None:
                    privacy["notify_on_questions"] = p.notify_on_questions
                await self.call("PUT", f"{t.social}/v1/users/{p.user_id}/privacy", privacy)
            case ev.FriendshipAdded():
                await self.call("PUT", f"{t.social}/v1/users/{p.user_id}/friends/{p.friend_id}")
            case ev.PurchaseCompleted():
                prices = {d["id"]: d["price"] for d in DEMO_PRODUCTS}
                body = {
                    "user_id": p.user_id,
                    "currency": p.currency,
                    "lines": [
                        {
                            "product_id": line.product_id,
                            "quantity": line.quantity,
                            "unit_price": prices.get(line.product_id, str(line.unit_price)),
                        }
                        for line in p.lines
                    ],
                }
                referral = self.referrals.pick(p.user_id, p.lines[0].product_id)
                if referral is not None:
                    body["referral"] = referral
                answer = await self.call(
                    "POST", f"{t.orders}/v1/orders", body, **{"Idempotency-Key": self._key()}
                )
                if answer and answer.get("order_id"):
                    self.referred += referral is not None
                    self.order_ids[p.order_id] = answer["order_id"]
                    self.placed.append(answer["order_id"])
                    del self.placed[:-1000]
                    if len(self.order_ids) > 5000:  # bounded for a long run: forget the oldest
                        del self.order_ids[next(iter(self.order_ids))]
            case ev.OrderRefunded() | ev.OrderCancelled():
                order_id = self.order_ids.pop(p.order_id, None)
                if order_id is not None:  # its purchase went through: refund or cancel it whole
                    what = "refunds" if isinstance(event, ev.OrderRefunded) else "cancel"
                    await self.call(
                        "POST",
                        f"{t.orders}/v1/orders/{order_id}/{what}",
                        {},
                        **{"Idempotency-Key": self._key()},
                    )
            case ev.ReviewPosted() | ev.ReviewEdited():  # posting again edits
                await self.call(
                    "POST",
                    f"{t.social}/v1/reviews",
                    {
                        "user_id": p.user_id,
                        "product_id": p.product_id,
                        "rating": p.rating,
                        "text": REVIEW_TEXTS[p.rating],
                    },
                )
            case ev.ProductShared():
                answer = await self.call(
                    "POST",
                    f"{t.social}/v1/shares",
                    {"user_id": p.user_id, "product_id": p.product_id, "channel": p.channel},
                )
                if answer and answer.get("link_token"):
                    self.referrals.remember(p.user_id, p.product_id, answer["link_token"])
            case ev.QuestionAsked():
                answer = await self.call(
                    "POST",
                    f"{t.social}/v1/products/{p.product_id}/questions",
                    {"user_id": p.user_id, "text": p.text},
                    **{"Idempotency-Key": self._key()},
                )
                if answer and answer.get("question_id"):
                    self.question_ids[p.question_id] = answer["question_id"]
                    if len(self.question_ids) > 5000:  # bounded, like order_ids
                        del self.question_ids[next(iter(self.question_ids))]
            case ev.AnswerPosted():
                question_id = self.question_ids.get(p.question_id)
                if question_id is not None:  # its question went through
                    await self.call(
                        "POST",
                        f"{t.social}/v1/questions/{question_id}/answers",
                        {"user_id": p.user_id, "text": p.text},
                        **{"Idempotency-Key": self._key()},
                    )
            case _:
                pass  # e.g. review deletions: not part of the demo traffic

    # -- phases --

    async def setup(self) -> None:
        """Catalog and its promotions, first names and consent (the friendships come with the
        warm-up)."""
        started = time.monotonic()
        await asyncio.gather(
            *(
                self.call(
                    "POST",
                    f"{self.targets.catalog}/v1/products",
                    {
                        "id": d["id"],
                        "name": d["name"],
                        "description": f"{d['name']} from the socialproof demo shop.",
                        "price": d["price"],
                        "currency": "EUR",
                        "category": d["category"],
                        "active": True,
                    },
                )
                for d in DEMO_PRODUCTS
            )
        )
        # after the products (a promotion names known ones); an existing one (409) stays as is
        for promotion in promotion_bodies(self.promotions_at):
            await self.call("POST", f"{self.targets.catalog}/v1/promotions", promotion, (409,))
        setup = list(self.gen.setup_events())
        people = [e for e in setup if not isinstance(e, ev.FriendshipAdded)]
        self._friendships = [e for e in setup if isinstance(e, ev.FriendshipAdded)]
        self.referrals.befriend((e.payload.user_id, e.payload.friend_id) for e in self._friendships)
        count = await self._send_all(people)
        log.info(
            "demo users set up",
            extra={"calls": count, "seconds": round(time.monotonic() - started, 2)},
        )

    async def befriend(self) -> None:
        """The friendship graph (the bulk of the set-up: friend counts grow as it lands)."""
        started = time.monotonic()
        count = await self._send_all(self._friendships)
        log.info(
            "friendships set up",
            extra={"calls": count, "seconds": round(time.monotonic() - started, 2)},
        )

    async def _send_all(self, events: Iterator[ev.Event] | list[ev.Event]) -> int:
        """Sends in order of generation, several at a time (bounded)."""
        pending: set[asyncio.Task] = set()
        count = 0
        for event in events:
            count += 1
            pending.add(asyncio.create_task(self.send(event)))
            if len(pending) >= 64:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending)
        return count

    async def warmup(self, events: int) -> None:
        started = time.monotonic()
        await self._send_all(next(self._activity) for _ in range(events))
        log.info(
            "warm-up done",
            extra={"events": events, "seconds": round(time.monotonic() - started, 2)},
        )

    async def run(self, rate: float, duration_s: float | None = None) -> None:
        """``rate`` events per second (paced by a clock, not by how fast calls return)."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / rate
        next_at = loop.time()
        stop_at = None if duration_s is None else loop.time() + duration_s
        last_report = loop.time()
        tasks: set[asyncio.Task] = set()
        while stop_at is None or loop.time() < stop_at:
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()  # fell behind (backing off): don't burst to catch up
            if len(tasks) < 64:  # services stuck: skip rather than pile up
                task = asyncio.create_task(self.send(next(self._activity)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if loop.time() - last_report > 30:
                last_report = loop.time()
                log.info(
                    "simulating",
                    extra={"requests": self.sent, "failed": self.failed, "referred": self.referred},
                )
        if tasks:
            await asyncio.wait(tasks)


async def simulate_async(
    targets: Targets,
    *,
    rate: float,
    seed: int,
    users: int,
    warmup: int,
    duration_s: float | None = None,
    experiment: DemoExperiment | None = None,
) -> Simulator:
    simulator = Simulator(targets, demo_config(seed, users))
    try:
        await simulator.setup()
        # Purchases need no friendships: the page has counts while the graph is still landing.
        await asyncio.gather(simulator.befriend(), simulator.warmup(warmup))
        if rate > 0:
            await asyncio.gather(simulator.run(rate, duration_s), *demo_traffic(
                experiment, targets.notifier, targets.orders, targets.token, seed, duration_s))
    finally:
        await simulator.close()
    return simulator


def _default_url(service: str) -> str:
    from socialproof.settings import DEFAULT_PORTS

    port = os.environ.get(f"SOCIALPROOF_{service.upper()}_PORT", str(DEFAULT_PORTS[service]))
    return f"http://127.0.0.1:{port}"


async def _until_sigterm(work: Awaitable[object]) -> None:
    """Run ``work``; SIGTERM (make run stopping) cancels it, which is a clean stop. Raising
    KeyboardInterrupt from a signal handler instead landed in whichever request task was running
    and printed "Task exception was never retrieved" with a traceback."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await work
    except asyncio.CancelledError:
        pass


def simulate(
    rate: Annotated[
        float,
        typer.Option(min=0, envvar="SOCIALPROOF_SIMULATE_RATE", help="events per second; 0 = off"),
    ] = 5.0,
    seed: Annotated[
        int,
        typer.Option(
            envvar="SOCIALPROOF_DEMO_SEED", help="same seed, same users, graph and traffic"
        ),
    ] = 42,
    users: Annotated[int, typer.Option(min=DEMO_VIEWERS + 8, max=100_000)] = DEFAULT_USERS,
    warmup: Annotated[int, typer.Option(min=0, help="events sent at once after set-up")] = 400,
    duration: Annotated[
        float | None, typer.Option(help="stop after this many seconds (default: run until Ctrl-C)")
    ] = None,
    catalog_url: Annotated[
        str | None, typer.Option(help="default: SOCIALPROOF_CATALOG_PORT")
    ] = None,
    orders_url: Annotated[str | None, typer.Option(help="default: SOCIALPROOF_ORDERS_PORT")] = None,
    social_url: Annotated[str | None, typer.Option(help="default: SOCIALPROOF_SOCIAL_PORT")] = None,
    notifier_url: Annotated[
        str | None, typer.Option(help="default: SOCIALPROOF_NOTIFIER_PORT")
    ] = None,
    experiment_rate: ExperimentRate = DemoExperiment.rate,
    experiment_effects: ExperimentEffects = DemoExperiment.effects,
    experiment_base_rate: ExperimentBaseRate = DemoExperiment.base_rate,
    experiment_lost: ExperimentLost = DemoExperiment.lost,
    experiment_visitors: ExperimentVisitors = DemoExperiment.visitors,
    write_catalog: Annotated[
        Path | None,
        typer.Option(
            help="write the demo storefront's catalog of this seed (products, viewers) to this "
            "file and exit; the notifier reads it from SOCIALPROOF_DEMO_CATALOG_PATH"
        ),
    ] = None,
) -> None:
    """Simulate shop traffic (users, friendships, consents, purchases, refunds, reviews, shares,
    promotions and purchases through friends' share links), and visitors of a badge A/B
    experiment whose true effect is known (--experiment-*)."""
    if write_catalog is not None:
        write_demo_catalog(write_catalog, seed=seed, users=users)
        return
    experiment = DemoExperiment(experiment_rate, experiment_effects, experiment_base_rate,
                                experiment_lost, experiment_visitors)
    experiment.truth()  # a malformed --experiment-effects/--experiment-lost fails here
    from socialproof import logs
    from socialproof.settings import Settings

    settings = Settings()
    logs.configure("simulate", settings.log_level, settings.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    targets = Targets(
        catalog=catalog_url or _default_url("catalog"),
        orders=orders_url or _default_url("orders"),
        social=social_url or _default_url("social"),
        token=settings.require_service_token(),
        notifier=notifier_url or _default_url("notifier"),
    )
    log.info("simulator starting", extra={"rate": rate, "seed": seed, "users": users})
    try:
        asyncio.run(
            _until_sigterm(
                simulate_async(
                    targets, rate=rate, seed=seed, users=users, warmup=warmup, duration_s=duration,
                    experiment=experiment,
                )
            )
        )
    except KeyboardInterrupt:
        pass
    log.info("simulator stopped")
