"""The peer of issue #20: socialproof's core counters as a Quix Streams application.

Run by :mod:`bench.quix_peer` as a subprocess in ``.venv-peer`` (``make .venv-peer``; it
pins quixstreams 3.28.1, which needs confluent-kafka < 2.13 while the project pins 2.16). It
imports quixstreams and the standard library only, never the project::

    .venv-peer/bin/python bench/peer/quix_app.py --bootstrap 127.0.0.1:9092 \
        --group peer-b1 --state-dir /tmp/peer-b1 --now-ms 1764864000000 \
        --windows '{"bought": {"1h": 3600000, ...}, "shares": {...}}' \
        --orders X.orders.events --reviews X.social.reviews --shares X.social.shares \
        --other X.social.users --results X.peer-results --progress /tmp/peer-b1.json

What it computes, per product, with the rules of ``services/counters/oracle.py`` (the reference
our views are checked against), from the contract events' JSON:

- ``bought``: distinct buyers whose latest *kept* purchase is within each window. An order line
  is kept while the order is not cancelled and its quantity minus its refunds (one per refund
  id, quantities of a product summed over the refund's lines) stays above 0; a buyer counts
  while any order line of theirs for the product is kept, at the time of the latest such order.
- ``reviews``: count, average (two decimals, half up) and histogram of live reviews, the newest
  ``(occurred_at, event_id)`` of each (product, author) winning; a deleted one is not live.
- ``shares``: total, per channel, and within each share window, once per share id.

The shape, in Quix's terms (every stage a ``StreamingDataFrame`` with Quix's own RocksDB state,
backed by changelog topics, under ``processing_guarantee="exactly-once"``):

1. ``orders.events`` is keyed by order id, so the order's state (its purchase, refunds,
   cancellation) lives under that key: each event updates it and emits the order lines whose
   kept status changed (``expand``), then ``group_by`` product (a repartition topic);
2. per product: the kept orders of each buyer (one state key per buyer) and the window counts;
3. ``social.reviews`` and ``social.shares`` are already keyed by product: one stateful stage
   each. Other topics (``--other``: consent, names) are read and decoded like the worker reads
   them, and dropped: the core counters do not depend on them. Erasure is not modelled (the
   runner refuses event lists with erasures).

Each stage writes the product's new figures of its kind to ``--results`` (key: product, value:
``{"kind": "bought"|"reviews"|"shares", ...}``); the latest record of each (product, kind) is the
answer, read committed.

The windows and "now": our views count at *read* time (``ZCOUNT now-window +inf`` over the
stored event times). A streaming app answers as it goes, so the runner fixes the instant:
``--now-ms``, the same instant it evaluates the oracle at, and the app counts a time ``t`` in a
window ``w`` iff ``t >= now - w`` (no upper bound, as the views). Quix's own event-time windows
(tumbling, hopping, sliding) do not fit: they aggregate values into windows closed by a
watermark and cannot retract a buyer whose order is refunded later, nor count *distinct*
buyers by their latest purchase; hence plain state.

Progress for the runner (``--progress``, a JSON file rewritten every 0.1 s and at exit): the
monotonic time and the process CPU time (all threads, librdkafka's included) at the first and
at the last message processed (Application's ``on_message_processed``), and counts per topic.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from quixstreams import Application, State

ORDER_TYPES = ("purchase.completed", "order.refunded", "order.cancelled")
REVIEW_TYPES = ("review.posted", "review.edited", "review.deleted")


def event_ms(event: dict) -> int:
    """``occurred_at`` in ms, computed as the oracle does (``int(timestamp() * 1000)``)."""
    return int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)


def event_key(event: dict) -> tuple[int, str]:
    """The oracle's newest-wins order: (event ms, canonical event id)."""
    return event_ms(event), str(uuid.UUID(event["event_id"]))


def in_windows(ms: int | None, now_ms: int, windows: dict[str, int]) -> list[int]:
    return [int(ms is not None and ms >= now_ms - w) for w in windows.values()]


# --- stage 1: orders, by order id ------------------------------------------------------------


def order_lines(event: dict, state: State) -> list[dict]:
    """Update the order's state with one of its events; the lines whose kept status changed."""
    kind = event["event_type"]
    p = event["payload"]
    order = state.get("order") or {"q": None, "r": {}, "c": 0, "k": {}}
    if kind == "purchase.completed":
        bought: dict[str, int] = {}
        for line in p["lines"]:
            bought[line["product_id"]] = bought.get(line["product_id"], 0) + line["quantity"]
        order["q"] = bought
        order["u"] = p["user_id"]
        order["ms"] = event_ms(event)
    elif kind == "order.refunded":
        per_product: dict[str, int] = {}
        for line in p["lines"]:
            per_product[line["product_id"]] = per_product.get(line["product_id"], 0) + line[
                "quantity"
            ]
        for product, qty in per_product.items():
            order["r"].setdefault(product, {})[p["refund_id"]] = qty
    else:
        order["c"] = 1
    changes = []
    if order["q"] is not None:
        for product, qty in order["q"].items():
            kept = int(not order["c"] and qty - sum(order["r"].get(product, {}).values()) > 0)
            if kept != order["k"].get(product, 0):
                order["k"][product] = kept
                changes.append(
                    {"p": product, "u": order["u"], "o": p["order_id"], "ms": order["ms"],
                     "kept": kept}
                )
    state.set("order", order)
    return changes


# --- stage 2: buyers, by product -------------------------------------------------------------


def make_buyers(now_ms: int, windows: dict[str, int]):
    def buyers(change: dict, state: State) -> dict | None:
        """A buyer's kept orders of the product (one state key per buyer) and the counts."""
        key = f"u:{change['u']}"
        orders: dict[str, int] = state.get(key) or {}
        before = max(orders.values()) if orders else None
        if change["kept"]:
            orders[change["o"]] = change["ms"]
        else:
            orders.pop(change["o"], None)
        after = max(orders.values()) if orders else None
        if orders:
            state.set(key, orders)
        else:
            state.delete(key)
        if before == after:
            return None
        counts = state.get("bought") or [0] * len(windows)
        old, new = in_windows(before, now_ms, windows), in_windows(after, now_ms, windows)
        counts = [c - o + n for c, o, n in zip(counts, old, new, strict=True)]
        state.set("bought", counts)
        return {"kind": "bought", **dict(zip(windows, counts, strict=True))}

    return buyers


# --- reviews and shares, already keyed by product ----------------------------------------------


def stars(count: int, total: int) -> float | None:
    if count <= 0:
        return None
    return float((Decimal(total) / count).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def reviews(event: dict, state: State) -> dict | None:
    p = event["payload"]
    key = f"r:{p['user_id']}"
    newer = list(event_key(event))
    held = state.get(key)  # [ms, event id, live, rating]
    if held is not None and newer <= held[:2]:
        return None  # a duplicate, or older than what the author's review already is
    live = event["event_type"] != "review.deleted"
    rating = p["rating"] if live else 0
    state.set(key, [*newer, int(live), rating])
    summary = state.get("reviews") or [0, 0, 0, 0, 0, 0, 0]  # count, sum, h1..h5
    if held is not None and held[2]:
        summary[0] -= 1
        summary[1] -= held[3]
        summary[1 + held[3]] -= 1
    if live:
        summary[0] += 1
        summary[1] += rating
        summary[1 + rating] += 1
    state.set("reviews", summary)
    return {
        "kind": "reviews",
        "count": summary[0],
        "average": stars(summary[0], summary[1]),
        "histogram": {str(s): summary[1 + s] for s in range(1, 6)},
    }


def make_shares(now_ms: int, windows: dict[str, int]):
    def shares(event: dict, state: State) -> dict | None:
        p = event["payload"]
        key = f"s:{p['share_id']}"
        if state.exists(key):
            return None  # the same share again
        state.set(key, 1)
        summary = state.get("shares") or {"total": 0, "w": [0] * len(windows), "ch": {}}
        summary["total"] += 1
        summary["w"] = [
            c + n for c, n in zip(summary["w"], in_windows(event_ms(event), now_ms, windows),
                                  strict=True)
        ]
        summary["ch"][p["channel"]] = summary["ch"].get(p["channel"], 0) + 1
        state.set("shares", summary)
        return {
            "kind": "shares",
            **dict(zip(windows, summary["w"], strict=True)),
            "total": summary["total"],
            "by_channel": dict(sorted(summary["ch"].items())),
        }

    return shares


# --- progress for the runner ---------------------------------------------------------------------


class Progress:
    """First and last message processed (monotonic and process CPU time) and counts per topic,
    written to ``path`` every 0.1 s by a daemon thread and once more at exit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts: dict[str, int] = {}
        self.first: tuple[float, float] | None = None
        self.last: tuple[float, float] | None = None
        self.lock = threading.Lock()

    def processed(self, topic: str, partition: int, offset: int) -> None:
        now = (time.monotonic(), time.process_time())
        if self.first is None:
            self.first = now
        self.last = now
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write(self) -> None:
        with self.lock:
            data = {
                "pid": os.getpid(),
                "first_monotonic": self.first and self.first[0],
                "first_cpu_s": self.first and self.first[1],
                "last_monotonic": self.last and self.last[0],
                "last_cpu_s": self.last and self.last[1],
                "counts": dict(self.counts),
            }
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as out:
                json.dump(data, out)
            os.replace(tmp, self.path)

    def start(self) -> None:
        def loop() -> None:
            while True:
                self.write()
                time.sleep(0.1)

        threading.Thread(target=loop, name="progress", daemon=True).start()


# --- the application ---------------------------------------------------------------------------


def build(args: argparse.Namespace, progress: Progress) -> Application:
    windows: dict[str, Any] = json.loads(args.windows)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval_s,
        state_dir=args.state_dir,
        on_message_processed=progress.processed,
        loglevel=args.loglevel,
    )
    results = app.topic(args.results, key_serializer="str", value_serializer="json")

    def source(name: str):
        return app.topic(name, key_deserializer="str", value_deserializer="json")

    for name in args.orders:
        sdf = app.dataframe(source(name))
        sdf = sdf.filter(lambda e: e["event_type"] in ORDER_TYPES)
        sdf = sdf.apply(order_lines, stateful=True, expand=True)
        sdf = sdf.group_by(lambda change: change["p"], name="product", key_serializer="str",
                           key_deserializer="str")
        sdf = sdf.apply(make_buyers(args.now_ms, windows["bought"]), stateful=True)
        sdf = sdf.filter(lambda r: r is not None)
        sdf.to_topic(results)
    for name in args.reviews:
        sdf = app.dataframe(source(name))
        sdf = sdf.filter(lambda e: e["event_type"] in REVIEW_TYPES)
        sdf = sdf.apply(reviews, stateful=True).filter(lambda r: r is not None)
        sdf.to_topic(results)
    for name in args.shares:
        sdf = app.dataframe(source(name))
        sdf = sdf.filter(lambda e: e["event_type"] == "product.shared")
        sdf = sdf.apply(make_shares(args.now_ms, windows["shares"]), stateful=True)
        sdf = sdf.filter(lambda r: r is not None)
        sdf.to_topic(results)
    for name in args.other:
        app.dataframe(source(name)).filter(lambda e: False)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="quix_app.py")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True, help="consumer group; names internal topics")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--now-ms", type=int, required=True, help="the instant windows end at")
    parser.add_argument("--windows", required=True,
                        help='JSON {"bought": {label: ms}, "shares": {label: ms}}')
    parser.add_argument("--orders", action="append", default=[])
    parser.add_argument("--reviews", action="append", default=[])
    parser.add_argument("--shares", action="append", default=[])
    parser.add_argument("--other", action="append", default=[], help="read and dropped")
    parser.add_argument("--results", required=True, help="output topic (must exist)")
    parser.add_argument("--progress", required=True, help="progress file (JSON)")
    parser.add_argument("--commit-interval-s", type=float, default=5.0)
    parser.add_argument("--loglevel", default="WARNING")
    args = parser.parse_args(argv)
    progress = Progress(args.progress)
    app = build(args, progress)
    progress.start()
    try:
        app.run()
    finally:
        progress.write()


if __name__ == "__main__":
    main()
