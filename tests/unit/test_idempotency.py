"""Unit tests of ``Idempotency-Key`` support (:mod:`socialproof.idempotency`): the per-key record
(reserve, complete, replay, 409 for another body) and :func:`idempotent`, the sequence orders,
refunds and shares run through. Redis is an in-memory fake."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from socialproof.http import ApiError
from socialproof.idempotency import Idempotency, idempotent
from tests.support.services import run_async


class FakeRedis:
    """The two commands :class:`Idempotency` uses, in memory."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.ttls: dict[str, int] = {}

    async def get(self, key: str):
        return self.data.get(key)

    async def set(self, key: str, value: bytes, nx: bool = False, ex: int | None = None):
        if nx and key in self.data:
            return None
        self.data[key], self.ttls[key] = value, ex or -1
        return True


def test_idempotency_reuses_reserved_ids_replays_answers_and_refuses_other_bodies() -> None:
    async def scenario() -> None:
        redis = FakeRedis()
        idem = Idempotency(redis, "ns", "orders", ttl_s=86_400)  # type: ignore[arg-type]
        body = Idempotency.fingerprint({"user_id": "u1", "lines": [1]})
        assert await idem.lookup("k1", body) is None
        # first attempt reserves ids, then (say) the broker does not answer: no completion
        first = await idem.reserve("k1", body, {"order_id": "o-1"})
        # the retry gets the same ids, so it republishes the same order
        assert await idem.lookup("k1", body) is None
        assert await idem.reserve("k1", body, {"order_id": "o-2"}) == first == {"order_id": "o-1"}
        await idem.complete("k1", body, first, status=201, body={"order_id": "o-1"})
        replay = await idem.lookup("k1", body)
        assert replay is not None and (replay.status, replay.body) == (201, {"order_id": "o-1"})
        other = Idempotency.fingerprint({"user_id": "u2", "lines": [1]})
        with pytest.raises(ApiError) as conflict:
            await idem.lookup("k1", other)
        assert conflict.value.status == 409
        with pytest.raises(ApiError):
            await idem.reserve("k1", other, {"order_id": "o-3"})
        assert set(redis.ttls.values()) == {86_400}
        # key order in the body does not matter
        assert Idempotency.fingerprint({"a": 1, "b": 2}) == Idempotency.fingerprint(
            {"b": 2, "a": 1}
        )

    run_async(scenario)


class Calls:
    """A handler's parts as :func:`idempotent` takes them, recording what it was asked to do."""

    def __init__(self, *, fail_publish: int = 0, refuse: bool = False) -> None:
        self.fail_publish, self.refuse = fail_publish, refuse
        self.checked = self.issued = 0
        self.published: list[dict[str, Any]] = []

    async def check(self) -> None:
        self.checked += 1
        if self.refuse:
            raise ApiError(422, "validation_failed", "unknown product")

    def new_ids(self) -> dict[str, Any]:
        self.issued += 1
        return {"order_id": f"o-{self.issued}", "event_id": f"e-{self.issued}"}

    async def publish(self, ids: dict[str, Any]) -> dict[str, Any]:
        self.published.append(ids)
        if self.fail_publish:
            self.fail_publish -= 1
            raise ApiError(503, "broker_unavailable", "the broker does not answer")
        return {"order_id": ids["order_id"], "status": "accepted"}

    async def run(self, idem: Idempotency, key: str | None, body: Any) -> Any:
        return await idempotent(
            idem, key, body, check=self.check, new_ids=self.new_ids, publish=self.publish
        )


def records() -> tuple[FakeRedis, Idempotency]:
    redis = FakeRedis()
    return redis, Idempotency(redis, "ns", "orders", ttl_s=3600)  # type: ignore[arg-type]


def test_idempotent_without_a_key_checks_publishes_fresh_ids_and_stores_nothing() -> None:
    async def scenario() -> None:
        redis, idem = records()
        calls = Calls()
        first = await calls.run(idem, None, {"user_id": "u1"})
        second = await calls.run(idem, None, {"user_id": "u1"})
        assert (first.status_code, orjson.loads(first.body)) == (
            201,
            {"order_id": "o-1", "status": "accepted"},
        )
        assert "idempotent-replay" not in first.headers
        assert orjson.loads(second.body)["order_id"] == "o-2"
        assert calls.checked == 2 and [p["order_id"] for p in calls.published] == ["o-1", "o-2"]
        assert redis.data == {}

    run_async(scenario)


def test_idempotent_retry_after_a_failed_publish_republishes_the_same_ids_then_replays() -> None:
    async def scenario() -> None:
        redis, idem = records()
        body = {"user_id": "u1", "lines": [{"product_id": "p1", "quantity": 1}]}
        calls = Calls(fail_publish=1)
        # the first attempt reserves o-1, then the broker does not answer: 503, nothing stored
        with pytest.raises(ApiError) as unavailable:
            await calls.run(idem, "k1", body)
        assert unavailable.value.status == 503
        assert await idem.lookup("k1", Idempotency.fingerprint(body)) is None
        # the retry gets fresh ids offered but publishes the reserved ones: the same order again
        retry = await calls.run(idem, "k1", body)
        assert calls.published == [{"order_id": "o-1", "event_id": "e-1"}] * 2
        assert (retry.status_code, orjson.loads(retry.body)["order_id"]) == (201, "o-1")
        assert "idempotent-replay" not in retry.headers
        # once answered, the same key and body replay the answer: no check, nothing published
        replay = await calls.run(idem, "k1", {**body})
        assert (replay.status_code, replay.body) == (201, retry.body)
        assert replay.headers["idempotent-replay"] == "true"
        assert calls.checked == 2 and len(calls.published) == 2
        assert set(redis.ttls.values()) == {3600}

    run_async(scenario)


def test_idempotent_refuses_a_key_reused_with_another_body_before_doing_anything() -> None:
    async def scenario() -> None:
        _, idem = records()
        calls = Calls()
        await calls.run(idem, "k1", {"user_id": "u1"})
        with pytest.raises(ApiError) as conflict:
            await calls.run(idem, "k1", {"user_id": "u2"})
        assert (conflict.value.status, conflict.value.code) == (409, "idempotency_key_reused")
        assert calls.checked == 1 and len(calls.published) == 1

    run_async(scenario)


def test_idempotent_a_check_that_refuses_leaves_the_key_unused() -> None:
    async def scenario() -> None:
        redis, idem = records()
        refused = Calls(refuse=True)
        with pytest.raises(ApiError) as invalid:
            await refused.run(idem, "k1", {"product_id": "nope"})
        assert invalid.value.status == 422
        assert refused.issued == 0 and refused.published == [] and redis.data == {}
        # the client fixes the body and retries with the same key: accepted, not 409
        fixed = Calls()
        answer = await fixed.run(idem, "k1", {"product_id": "p1"})
        assert answer.status_code == 201 and fixed.published == [
            {"order_id": "o-1", "event_id": "e-1"}
        ]

    run_async(scenario)
