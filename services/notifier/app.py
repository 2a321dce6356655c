"""The notifier: the storefront-facing edge. Serves social proof and pushes changes live.

Read API (public, rate limited per client, cacheable with ETag / Cache-Control):

- ``GET /v1/proof/products/{id}``: a product's counters; an unknown product answers zeros (never
  404). With a valid viewer token also ``friends_bought`` ``{"count", "names"}`` for that viewer,
  and the answer is then ``Cache-Control: private`` (never stored by a shared cache).
- ``GET /v1/proof/products?ids=a,b,c`` (1..100 ids) for listing pages.
- ``GET /v1/trending``; ``GET /v1/activity?products=a,b`` (recent activity, newest first).

Viewer tokens: ``POST /v1/viewer-tokens`` ``{"viewer_id"}`` with the service token; see
:mod:`services.notifier.tokens`. Sent back as ``Authorization: Bearer`` or ``?viewer_token=``.

Live push (see :mod:`services.notifier.api.live`): SSE ``GET /v1/proof/stream?products=…`` and
the WebSocket ``/v1/proof/ws?products=…``. A viewer's own notifications (questions asked about
what they bought) and their progress in share-to-unlock promotions: SSE ``GET /v1/me/stream``
with their viewer token (:mod:`.api.me`).

Promotions (issue #17, :mod:`.api.promotions`): a sharer's progress
``GET /v1/promotions/{id}/progress?user_id=U`` (service token or U's viewer token), a product's
active promotions ``GET /v1/products/{id}/promotions`` (public) and its top sharers
``GET /v1/products/{id}/sharers`` (service token); the proof carries ``bought_via_shares``.

``SOCIALPROOF_REVIEWS_VERIFIED_ONLY``: review count, average and histogram are those of
verified-purchase reviews only (the ``verified_*`` figures are always in the answer).

Caching (see :mod:`services.notifier.cache` and :mod:`services.notifier.fastpath`): answers are
kept per ``(product, viewer)``, rendered once, invalidated by the processor's change channel and
at most ``SOCIALPROOF_PROOF_CACHE_MAX_AGE_S`` old; cache hits of the single-product read are
answered in front of the app (``app.state.asgi_app``, what ``socialproof serve`` serves).

Experiments and interactions (issue #18): the widget reports badge impressions, clicks and
dismissals with ``POST /v1/beacons`` (public, rate limited per visitor, ``text/plain`` JSON from
``navigator.sendBeacon``; :mod:`.api.beacons`), published to ``storefront.interactions``. With the
service token a shop creates, lists, reads and stops A/B experiments on badges
(``POST``/``GET /v1/experiments``, ``GET /v1/experiments/{id}``, ``POST
/v1/experiments/{id}/stop``); the public ``GET /v1/experiments/{id}/assignment?visitor_id=`` and
``GET /v1/products/{id}/experiment?visitor_id=`` (what the widget asks; 204 without one) say which
variant a visitor sees (:mod:`.api.experiments`; the definitions are a view of
``storefront.experiments``, :mod:`services.notifier.experiments`). Results and the merchant page:
:mod:`.api.insights`. ``SOCIALPROOF_INTERACTION_TRACKING=false`` turns tracking off.

Storefront: ``/widget.js`` (the embeddable badge) and, only when ``SOCIALPROOF_DEMO_ENABLED`` is
true (``make run`` sets it), the demo storefront at ``/demo`` (with its product questions,
:mod:`.api.demoqa`, and its shares and orders, :mod:`.api.demoshop`, which call the social and
orders services with the service token: dev only).

Layout: this module builds the app and its state (``app.state``: the reader, the cache, the hub,
tokens, the rate limiters, the event publisher, the experiments; ``asgi_app``: the app behind its
fast path); the routes are in
:mod:`services.notifier.api` (``proof`` the read API, ``tokens`` viewer tokens, ``live`` SSE and
WebSocket, ``me`` the viewer's own notifications, ``beacons`` and ``experiments``, ``insights``,
``storefront`` the widget and the demo), the HTTP bodies in :mod:`services.notifier.schemas` (and
:mod:`services.notifier.experiment_schemas`); the other modules are the domain (reading proof, the cache and
its fast path, the hub of live connections, rate limits, tokens).

The serving store (issue #16): ``REDIS_URL`` names one Redis or a node of a Redis Cluster;
:func:`connect_serving` tells them apart (:func:`socialproof.redis.connect_store`) and the
reader follows the active namespace's recorded shard count (:func:`follow_active_namespace`).
On a cluster the hub subscribes to one node at a time (classic ``PUBLISH`` reaches every node)
and moves on when it dies; a read the cluster cannot answer is a 503.

Run: ``socialproof serve notifier`` (port ``SOCIALPROOF_NOTIFIER_PORT``, default 8004).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts import namespaces
from contracts.layout import StoreLayout, resolve_shards
from services.notifier.api import (
    beacons,
    demoqa,
    demoshop,
    experiments,
    explain,
    insights,
    live,
    me,
    promotions,
    proof,
    storefront,
    tokens,
)
from services.notifier.api.sse import store_unavailable
from services.notifier.cache import CachedProofs, ProofCache
from services.notifier.experiments import ExperimentRegistry
from services.notifier.fastpath import Cors, FastPath, FastPathApp
from services.notifier.hub import ClusterSubscriber, Hub
from services.notifier.promotions import PromotionReader
from services.notifier.proof import CLUSTER_UNAVAILABLE, ProofReader
from services.notifier.ratelimit import RateLimiter
from services.notifier.settings import NotifierSettings
from services.notifier.tokens import ViewerTokens, derive_secret
from socialproof import redis as redis_client
from socialproof.gctune import tune_gc
from socialproof.http import create_service_app
from socialproof.kafka import BrokerProbe, EventPublisher

SERVICE = "notifier"
#: connections to the store: of the single node's waiting pool; on a cluster, to each node
STORE_MAX_CONNECTIONS = 256
log = logging.getLogger("socialproof.notifier")


# --- the app -------------------------------------------------------------------------------------


def connect_waiting(settings: NotifierSettings) -> aioredis.Redis:
    """The shared client settings, with a pool that waits (up to the socket timeout) for a free
    connection: a burst of new streams, each reading its initial state, must queue for one
    rather than fail with "too many connections"."""
    return waiting(redis_client.connect(settings))


def waiting(plain: aioredis.Redis) -> aioredis.Redis:
    """:func:`connect_waiting` from a client of :func:`socialproof.redis.connect` (not used)."""
    shared = plain.connection_pool
    pool = aioredis.BlockingConnectionPool(
        connection_class=shared.connection_class,
        max_connections=shared.max_connections,
        timeout=shared.connection_kwargs.get("socket_timeout") or 2.0,
        **shared.connection_kwargs,
    )
    client = aioredis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool too, as from_url's do
    return client


async def connect_serving(
    settings: NotifierSettings,
) -> tuple[aioredis.Redis | AsyncRedisCluster, bool]:
    """The serving store's client (:func:`socialproof.redis.connect_store`), and whether its
    kind is known: redis-py's cluster client when ``REDIS_URL`` names a Redis Cluster node, else
    the single node's client with a waiting pool (:func:`connect_waiting`).

    The cluster client has no waiting pool (a node's ``max_connections`` exhausted raises
    MaxConnectionsError at once); its equivalent is the reader's gate: at most
    ``max_connections`` reads at a time, each using at most one connection per node (the fan-out
    reads are one pipeline), so a burst queues there instead.

    While the node does not answer the notifier starts anyway and answers 503, as it always
    did: with the single node's client, kind unknown; :func:`follow_active_namespace` asks again
    and switches to the cluster client if the store turns out to be one."""
    try:
        store = await redis_client.connect_store(settings, max_connections=STORE_MAX_CONNECTIONS)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning(
            "the serving store does not answer: 503 until it does",
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )
        return connect_waiting(settings), False
    if isinstance(store, AsyncRedisCluster):
        return store, True
    client = waiting(store)
    await store.aclose()
    return client, True


def cluster_subscriber(cluster: AsyncRedisCluster, settings: NotifierSettings) -> ClusterSubscriber:
    """The hub's pub/sub on a cluster: a plain connection to one node at a time, no read
    timeout (it holds its connection for ever)."""
    return ClusterSubscriber(
        cluster,
        settings.redis_url,
        socket_timeout=None,
        socket_connect_timeout=2.0,
        health_check_interval=15,
        decode_responses=True,
    )


async def store_ready(redis: aioredis.Redis | AsyncRedisCluster) -> bool:
    """Readiness: the store answers a PING. On a cluster redis-py sends it to one node (its
    default node, replaced when it fails), so a master's failure does not take every notifier
    out of rotation for the failover's seconds: the reads that need its slots answer 503 until
    its replica takes over, while cached answers, the other masters' reads and live streams go
    on (as the other services' readiness does, socialproof.http.ServingStore)."""
    return bool(await redis.ping())


def viewer_tokens(settings: NotifierSettings) -> ViewerTokens:
    if settings.viewer_token_secret is not None:
        secret = settings.viewer_token_secret.get_secret_value().encode()
    else:
        secret = derive_secret(settings.require_service_token())
    return ViewerTokens(secret, settings.viewer_token_ttl_s)


async def follow_active_namespace(
    reader: ProofReader,
    hub: Hub,
    settings: NotifierSettings,
    interval_s: float = 1.0,
    adopt: Callable[[AsyncRedisCluster], Awaitable[None]] | None = None,
) -> None:
    """Serve the namespace ``replay rebuild --switch`` made active (contracts.namespaces), with
    the shard count recorded for it (contracts.layout).

    The switch is one HSET; this sees it within ``interval_s``. Each read uses one namespace
    whole (the old one stays intact through the rebuild's grace period), and live connections
    get the new namespace's state at once.

    ``adopt``: the store did not answer at start, so its kind is not known; until it answers it
    is asked every ``interval_s``, and if it is a Redis Cluster ``adopt`` gets its client."""
    pointer = namespaces.pointer_key(settings.redis_namespace)
    while True:
        try:
            if adopt is not None:
                store = await redis_client.connect_store(
                    settings, max_connections=STORE_MAX_CONNECTIONS
                )
                if isinstance(store, AsyncRedisCluster):
                    await adopt(store)
                else:
                    await store.aclose()  # the single node's waiting client stays
                adopt = None
            redis = reader.redis
            raw = await redis.hgetall(pointer)
            active = namespaces.parse(raw, settings.redis_namespace).active
            cluster = isinstance(redis, AsyncRedisCluster)
            served = StoreLayout(active, resolve_shards(raw, active, cluster))
            if served != reader.layout:
                log.info(
                    "serving a new namespace",
                    extra={
                        "namespace": active,
                        "shards": served.shards,
                        "previous": reader.layout.namespace,
                    },
                )
                reader.layout = served
                if hub.cache is not None:
                    hub.cache.flush()  # after the switch: reads in flight are refused too
                await hub.dispatch(list(hub.watchers))
                hub.ring_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a Redis outage: keep serving, try again
            log.warning("namespace check failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        await asyncio.sleep(interval_s)


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()

    max_age = settings.public_max_age_s

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis, known = await connect_serving(settings)
        cluster = isinstance(redis, AsyncRedisCluster)
        # the shards of the base namespace; follow_active_namespace moves to the active one
        pointer: dict[str, str] = {}
        if known:
            try:
                pointer = await redis.hgetall(namespaces.pointer_key(settings.redis_namespace))
            except RedisError as exc:  # the follower reads it again every second
                log.warning(
                    "namespace check failed", extra={"error": f"{type(exc).__name__}: {exc}"}
                )
        reader = ProofReader(
            redis,
            settings.redis_namespace,
            settings.default_show_in_activity_feed,
            reviews_verified_only=settings.reviews_verified_only,
            shards=resolve_shards(pointer, settings.redis_namespace, cluster),
            concurrency=STORE_MAX_CONNECTIONS if cluster else None,
        )
        cache = ProofCache(settings.proof_cache_max_entries, settings.proof_cache_max_age_s)
        proofs = CachedProofs(reader, cache, max_age)

        async def read_states(product_ids: list[str]) -> list[dict]:
            return [rendered.state for rendered in await proofs.public(product_ids)]

        async def read_encoded(product_ids: list[str]) -> list[tuple[dict, bytes]]:
            """Public states with their JSON, encoded once when read (shared by every watcher)."""
            return [
                (rendered.state, rendered.body) for rendered in await proofs.public(product_ids)
            ]

        # Pub/sub holds its connection for ever: give it its own client with no read timeout.
        # (on a cluster a plain connection to one node at a time: services.notifier.hub)
        plain_pubsub = None if cluster else redis_client.connect(settings, socket_timeout=None)
        hub = Hub(
            cluster_subscriber(redis, settings) if cluster else plain_pubsub,
            reader.keys.changes_channel,
            read_encoded,
            cache,
            user_channel=f"{reader.keys.ns}:user-changes",  # users with new notes (issue #19)
        )
        app.state.redis, app.state.reader, app.state.hub = redis, reader, hub
        app.state.promotions = PromotionReader(reader, settings.default_share_purchases)
        app.state.proofs, app.state.read_states = proofs, read_states
        app.state.read_encoded = read_encoded
        app.state.broker = BrokerProbe(settings)
        app.state.tokens = viewer_tokens(settings)
        app.state.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        front.fast = FastPath(cache, app.state.tokens, app.state.limiter, cors, SERVICE)
        # issue #18: beacons and experiments write events; every process reads the experiments
        app.state.beacon_limiter = RateLimiter(settings.beacon_rate_per_s, settings.beacon_burst)
        app.state.publisher = EventPublisher(settings, client_id=SERVICE)
        app.state.experiments = ExperimentRegistry(settings)
        await app.state.experiments.start()
        hub.start()
        # On SIGTERM end live streams at once; clients reconnect (see socialproof.serve).
        app.state.on_exit_signal = [hub.close_all]

        async def adopt(store: AsyncRedisCluster) -> None:
            """The store that did not answer at start is a Redis Cluster: read through its
            client from now on (reads and the readiness check at once; the hub's next
            subscription goes through it, its current one hears every node already)."""
            log.info("the serving store is a Redis Cluster", extra={"url": settings.redis_url})
            previous = reader.redis
            reader.use(store, STORE_MAX_CONNECTIONS)
            app.state.redis = store
            app.state.promotions = PromotionReader(reader, settings.default_share_purchases)
            hub.redis = cluster_subscriber(store, settings)
            await previous.aclose()

        follower = asyncio.create_task(
            follow_active_namespace(reader, hub, settings, adopt=None if known else adopt)
        )
        # the notifier holds thousands of live connections: full collections were the tail of
        # change-to-client latency (see socialproof.gctune)
        tune_gc()
        try:
            yield
        finally:
            front.fast = None
            follower.cancel()
            proofs.close()
            await hub.stop()
            if plain_pubsub is not None:
                await plain_pubsub.aclose()
            await reader.redis.aclose()
            await app.state.experiments.stop()
            await asyncio.to_thread(app.state.publisher.close)

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description="Social proof for storefronts: read API, live push, widget.",
        lifespan=lifespan,
        readiness=lambda app: {
            "kafka": app.state.broker.check,
            "redis": lambda: store_ready(app.state.redis),
            "experiments": app.state.experiments.check,
        },
    )
    # a Redis Cluster that cannot serve a read (no node reachable, a slot not covered yet):
    # 503 with Retry-After, as a single node's connection errors are (socialproof.http)
    for error in CLUSTER_UNAVAILABLE:
        app.add_exception_handler(error, lambda _, exc: store_unavailable(exc))
    cors = Cors(
        allow_origins=tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip()),
        expose_headers=("ETag", "Retry-After"),
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cors.allow_origins),
        # POST: beacons (a sendBeacon's text/plain needs no preflight; application/json does)
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "If-None-Match", "Last-Event-ID"],
        expose_headers=list(cors.expose_headers),
        max_age=600,
    )
    # what servers serve (socialproof.serve): the app behind the read API's fast path
    front = app.state.asgi_app = FastPathApp(app)

    # the widget (and the demo's pages), read once; the demo's routes exist only when it is on
    app.state.storefront = storefront.assets(settings)
    for api in (
        *(tokens, proof, explain, live, me, promotions),
        *(beacons, experiments, insights),  # issue #18
        storefront,
    ):
        app.include_router(api.router)
    if settings.demo_enabled:
        app.include_router(storefront.demo_router)
        app.include_router(demoqa.router)  # asks and answers with the service token: dev only
        app.include_router(demoshop.router)  # shares and orders with the service token: dev only
    return app
