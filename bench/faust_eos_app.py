"""The Faust design the ``faust_eos`` bench scenario measures against the worker: Faust's own
``processing_guarantee='exactly_once'`` with changelog-backed tables. Run only by the bench, as a
process of its own so that it can be SIGKILLed::

    python -m bench.faust_eos_app --bootstrap 127.0.0.1:9092 --app-id faust-b1 \
        --source orders.events --web-port 6070 --datadir /tmp/faust-b1

What it counts: purchases per product, i.e. how many distinct orders (``purchase.completed``
events decoded with :mod:`contracts.codec`, duplicates by ``order_id`` counted once) contain the
product, the count the worker keeps in ``ub:{product}|{user}`` (see :mod:`bench.faust_eos`).
Faust's way, since ``orders.events`` is keyed by order id and a table must be updated from the
partition its key lives in (the changelog record goes to the source event's partition):

1. ``dedupe`` reads the source; a table ``orders-seen`` (order id → 1, co-partitioned with the
   source) drops the duplicates; each new order's products go to the repartition topic
   ``<prefix>faust-...-by-product`` keyed by product (a ``group_by`` by hand);
2. ``count`` reads that topic and adds one to ``purchases[product]``.

Both tables live in memory and are rebuilt from their changelog topics at every start (Faust's
RocksDB store needs ``rocksdict``, which is not installed here). With exactly-once, Faust puts
each changelog write, each repartitioned record and the consumed offsets into Kafka transactions,
committed every ``--commit-interval-s`` (1 s, as the worker's Faust app), and reads with
``isolation_level=read_committed``. The repartition and changelog topics are created before
Faust starts (see :func:`create_topics`).

``GET /state`` (the web server): partitions assigned, whether table recovery has completed, and
how many source records and repartitioned records this process has handled since it started;
``GET /table``: the ``purchases`` table as JSON.
"""

from __future__ import annotations

import argparse
from typing import Any

import faust

from contracts import codec
from contracts.events import PurchaseCompleted

PARTITIONS = 6  # the registry's orders.events; the tables and the repartition topic match it


def build(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        processing_guarantee="exactly_once",
        store="memory://",
        autodiscover=False,
        datadir=args.datadir,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_port=args.web_port,
        web_in_thread=False,
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        table_standby_replicas=0,
        broker_session_timeout=args.session_timeout_s,
        broker_heartbeat_interval=min(1.0, args.session_timeout_s / 3),
        broker_commit_interval=args.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        # tables and the repartition topic: str keys, int/str values, JSON (round-trips types)
        key_serializer="json",
        value_serializer="json",
    )
    source = app.topic(
        args.source,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
        partitions=PARTITIONS,
    )
    by_product = app.topic(
        f"{args.app_id}-by-product", key_type=str, value_type=str, partitions=PARTITIONS,
        internal=True,
    )
    seen = app.Table("orders-seen", default=int, partitions=PARTITIONS)
    purchases = app.Table("purchases", default=int, partitions=PARTITIONS)
    handled = {"consumed": 0, "applied": 0}

    @app.agent(source, name="dedupe")
    async def dedupe(stream: faust.StreamT) -> None:
        async for event in stream.events():
            handled["consumed"] += 1
            try:
                decoded = codec.decode(event.value)
            except codec.EventDecodeError:
                continue
            if not isinstance(decoded, PurchaseCompleted):
                continue
            order = decoded.payload.order_id
            if seen[order]:
                continue  # a duplicate of an order already counted
            seen[order] = 1
            for product in dict.fromkeys(line.product_id for line in decoded.payload.lines):
                await by_product.send(key=product, value=order)

    @app.agent(by_product, name="count")
    async def count(stream: faust.StreamT) -> None:
        async for event in stream.events():
            purchases[event.key] += 1
            handled["applied"] += 1

    @app.page("/state")
    async def state(web: Any, request: Any) -> Any:
        consumer = app.consumer
        return web.json(
            {
                "assigned": len(consumer.assignment()) if consumer is not None else 0,
                "recovered": app.tables.recovery.completed.is_set(),
                **handled,
            }
        )

    @app.page("/table")
    async def table(web: Any, request: Any) -> Any:
        return web.json({str(k): int(v) for k, v in purchases.items()})

    return app


def create_topics(args: argparse.Namespace) -> None:
    """The repartition and changelog topics, before Faust starts: Faust declares its internal
    topics while its consumer subscribes, and a subscription that finds a topic missing ignores
    it for good (measured: an app started on a broker that answered at once logged "Ignoring
    missing topic" and never read its repartition topic)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    compacted = {"cleanup.policy": "compact"}
    wanted = [
        NewTopic(f"{args.app_id}-by-product", PARTITIONS, 1),
        NewTopic(f"{args.app_id}-orders-seen-changelog", PARTITIONS, 1, config=compacted),
        NewTopic(f"{args.app_id}-purchases-changelog", PARTITIONS, 1, config=compacted),
    ]
    for name, future in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result(timeout=60)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"creating {name}: {exc}") from exc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faust_eos_app")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--app-id", required=True, help="consumer group and topic name prefix")
    parser.add_argument("--source", required=True, help="the orders topic's name on the broker")
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--datadir", required=True)
    parser.add_argument("--session-timeout-s", type=float, default=6.0)
    parser.add_argument("--commit-interval-s", type=float, default=1.0)
    parser.add_argument("--loglevel", default="warning")
    args = parser.parse_args(argv)
    create_topics(args)
    app = build(args)
    faust.Worker(
        app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
