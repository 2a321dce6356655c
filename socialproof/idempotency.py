"""``Idempotency-Key`` support for write endpoints that create something (orders, refunds, shares).

A client that did not hear the answer retries with the same key. The record kept per key in Redis
(derived state, with a TTL) makes the retry safe:

- same key, same body, already answered  -> the stored answer again, nothing published;
- same key, same body, not answered yet (the first attempt got a 503, or is still running)
  -> the ids *reserved* by the first attempt are reused, so a republished event carries the same
  order/event id and consumers deduplicate it;
- same key, different body -> 409 ``idempotency_key_reused``.

Each record is one key (``{namespace}:idem:{scope}:{sha256 of the key}``) read and written by
single-key commands (GET, SET NX EX), so the same code runs on one Redis and on a Redis Cluster,
where the records spread over the masters by their key.

Handlers call :func:`idempotent`, which runs the whole sequence: look the key up (a stored answer
is sent again with ``Idempotent-Replay: true``), run the handler's checks, reserve the ids, publish
with them, store the answer::

    return await idempotent(
        records, key, body.model_dump(mode="json"),
        new_ids=lambda: {"order_id": ..., "event_id": ...},
        publish=publish_order,  # async (ids) -> the answer's JSON body
        check=check_products,   # optional: refusals that must not use up the key
    )
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import redis.asyncio as aioredis
from fastapi import Header
from fastapi.responses import JSONResponse
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from socialproof.http import ApiError

#: how long a key is remembered unless the service configures otherwise
DEFAULT_TTL_S = 24 * 3600

#: what a client may send as ``Idempotency-Key`` (a UUID is typical)
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "Makes retries safe: the same key and body answer the first response again and "
            "publish nothing new; the same key with another body is 409. Kept for 24 h."
        ),
        examples=["4f1c2d9e-7a3b-4c55-9d0e-1b2a3c4d5e6f"],
    ),
]


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body, status_code=self.status, headers={"Idempotent-Replay": "true"}
        )


class Idempotency:
    """The records of one endpoint family (``scope``) in one Redis namespace."""

    def __init__(
        self, redis: aioredis.Redis | AsyncRedisCluster, namespace: str, scope: str, ttl_s: int
    ) -> None:
        self.redis, self.namespace, self.scope, self.ttl_s = redis, namespace, scope, ttl_s

    @staticmethod
    def fingerprint(body: Any) -> str:
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def _key(self, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        return f"{self.namespace}:idem:{self.scope}:{digest}"

    async def _get(self, key: str) -> dict | None:
        raw = await self.redis.get(self._key(key))
        return None if raw is None else orjson.loads(raw)

    @staticmethod
    def _check(record: dict, fingerprint: str) -> None:
        if record["fingerprint"] != fingerprint:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request body",
            )

    async def lookup(self, key: str, fingerprint: str) -> Replay | None:
        """The stored answer for a completed key; 409 for another body; None otherwise."""
        record = await self._get(key)
        if record is None:
            return None
        self._check(record, fingerprint)
        if record.get("status") is None:
            return None
        return Replay(record["status"], record["body"])

    async def reserve(self, key: str, fingerprint: str, fresh: dict[str, Any]) -> dict[str, Any]:
        """The ids to use: ``fresh`` if the key is new, else those reserved by the first attempt."""
        record = {"fingerprint": fingerprint, "reserved": fresh, "status": None, "body": None}
        for _ in range(3):
            if await self.redis.set(self._key(key), orjson.dumps(record), nx=True, ex=self.ttl_s):
                return fresh
            existing = await self._get(key)
            if existing is not None:  # else it expired in between: try to take it again
                self._check(existing, fingerprint)
                return existing["reserved"]
        raise RuntimeError("could not reserve an idempotency key")  # pragma: no cover

    async def complete(
        self, key: str, fingerprint: str, reserved: dict[str, Any], *, status: int, body: Any
    ) -> None:
        record = {"fingerprint": fingerprint, "reserved": reserved, "status": status, "body": body}
        await self.redis.set(self._key(key), orjson.dumps(record), ex=self.ttl_s)


async def idempotent(
    records: Idempotency,
    key: str | None,
    body: Any,
    *,
    new_ids: Callable[[], dict[str, Any]],
    publish: Callable[[dict[str, Any]], Awaitable[Any]],
    check: Callable[[], Awaitable[object]] | None = None,
    status: int = 201,
) -> JSONResponse:
    """One write that creates something, made safe to retry with ``Idempotency-Key`` ``key``.

    ``body`` is what identifies the request (its JSON form, fingerprinted). In order:

    1. with a key, a stored answer for the same body is sent again (another body: 409);
    2. ``check()``: refusals that must leave the key unused (e.g. an unknown product: the client
       may fix the body and retry with the same key);
    3. ``new_ids()``, or with a key the ids the key's first attempt reserved (so a retry after a
       503 republishes the same event, which consumers deduplicate);
    4. ``publish(ids)`` publishes and returns the answer's JSON body; if it raises (broker down:
       503), nothing is stored and the key keeps its ids for the retry;
    5. with a key, the answer is stored; it is sent with ``status``.

    Without a key it is steps 2-4 with fresh ids.
    """
    fingerprint = Idempotency.fingerprint(body)
    if key and (replay := await records.lookup(key, fingerprint)) is not None:
        return replay.response()
    if check is not None:
        await check()
    ids = new_ids()
    if key:
        ids = await records.reserve(key, fingerprint, ids)
    answer = await publish(ids)
    if key:
        await records.complete(key, fingerprint, ids, status=status, body=answer)
    return JSONResponse(answer, status_code=status)
