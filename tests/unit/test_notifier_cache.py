"""Unit tests of the read API's cache and fast path (services.notifier.cache / fastpath):
invalidation, the stale-fill race, maximum age, the bound, viewer isolation, one read per answer,
refresh ahead, and the fast path's answers and fall-throughs."""

from __future__ import annotations

import asyncio

import pytest

from services.notifier.cache import CachedProofs, ProofCache, Rendered, etag_of, render
from services.notifier.fastpath import Answer, Cors, FastPath
from services.notifier.proof import Proof
from services.notifier.ratelimit import RateLimiter
from services.notifier.tokens import ViewerTokens

SECRET = b"0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make_cache(max_entries: int = 100, max_age_s: float = 1.0) -> tuple[ProofCache, Clock]:
    clock = Clock()
    cache = ProofCache(max_entries, max_age_s, clock=clock)
    cache.resume()  # as the hub does once subscribed
    return cache, clock


def answer(cache: ProofCache, product: str, value: int, viewer: str | None = None) -> Rendered:
    state = {"product_id": product, "value": value, "as_of": "t"}
    if viewer is not None:
        state["friends_bought"] = {"count": value, "names": [viewer]}
    return render(state, private=viewer is not None, max_age=2, read_at=cache.clock())


def fill(cache: ProofCache, product: str, value: int, viewer: str | None = None) -> Rendered:
    rendered = answer(cache, product, value, viewer)
    assert cache.put(cache.ticket(), product, viewer, rendered)
    return rendered


def test_an_announced_product_is_read_again() -> None:
    cache, _ = make_cache()
    kept = fill(cache, "p1", 1)
    other = fill(cache, "p2", 2)
    assert cache.get("p1") is kept
    cache.invalidate(["p1"])
    assert cache.get("p1") is None
    assert cache.get("p2") is other  # only what was announced


def test_a_read_that_started_before_a_change_is_not_kept() -> None:
    cache, _ = make_cache()
    ticket = cache.ticket()  # the read starts …
    cache.invalidate(["p1"])  # … the processor announces p1 while it runs …
    assert not cache.put(ticket, "p1", None, answer(cache, "p1", 1))  # … so it is not kept
    assert cache.get("p1") is None
    # a change of another product does not matter, and a read started after the change is kept
    ticket = cache.ticket()
    cache.invalidate(["p2"])
    assert cache.put(ticket, "p1", None, answer(cache, "p1", 1))
    assert cache.get("p1") is not None


def test_a_flush_refuses_reads_in_flight_and_a_lost_channel_serves_nothing() -> None:
    cache, _ = make_cache()
    ticket = cache.ticket()
    fill(cache, "p1", 1)
    cache.flush()  # a namespace switch
    assert cache.get("p1") is None
    assert not cache.put(ticket, "p2", None, answer(cache, "p2", 2))
    fill(cache, "p1", 1)
    cache.suspend()  # the subscription is lost: changes can no longer be seen
    assert cache.get("p1") is None
    assert not cache.put(cache.ticket(), "p1", None, answer(cache, "p1", 1))
    cache.resume()  # subscribed again: from nothing
    assert cache.get("p1") is None and len(cache) == 0
    fill(cache, "p1", 1)
    assert cache.get("p1") is not None


def test_entries_live_at_most_the_maximum_age_from_the_start_of_their_read() -> None:
    cache, clock = make_cache(max_age_s=1.0)
    fill(cache, "p1", 1)
    clock.now += 0.99
    assert cache.get("p1") is not None
    clock.now += 0.01
    assert cache.get("p1") is None  # a time window may have expired without any event
    # a read that took longer than the maximum age is not kept at all
    ticket, slow = cache.ticket(), answer(cache, "p1", 1)
    clock.now += 1.5
    assert not cache.put(ticket, "p1", None, slow)


def test_no_maximum_age_means_no_cache() -> None:
    cache, _ = make_cache(max_age_s=0)
    assert not cache.put(cache.ticket(), "p1", None, answer(cache, "p1", 1))


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache, _ = make_cache(max_entries=3)
    for n in range(3):
        fill(cache, f"p{n}", n)
    assert cache.get("p0") is not None  # p0 is now the most recently used
    fill(cache, "p3", 3)
    assert len(cache) == 3
    assert cache.get("p1") is None  # the least recently used went
    assert all(cache.get(p) is not None for p in ("p0", "p2", "p3"))


def test_invalidation_marks_are_bounded_and_only_refuse_more() -> None:
    cache, _ = make_cache(max_entries=10)
    old_ticket = cache.ticket()
    kept = fill(cache, "kept", 1)
    cache.invalidate([f"x{n}" for n in range(50)])  # more marks than the bound
    assert len(cache._marks) <= 10
    # x0's mark was dropped: a read that started before it may have missed it, so it is refused
    assert not cache.put(old_ticket, "x0", None, answer(cache, "x0", 0))
    # an entry filled before the dropped marks may be stale as far as the cache can tell
    assert cache.get("kept") is not kept
    fill(cache, "x0", 0)  # a read started after them is fine
    assert cache.get("x0") is not None


def test_a_viewer_only_ever_gets_their_own_answer() -> None:
    cache, _ = make_cache()
    ana = fill(cache, "p1", 1, viewer="ana")
    assert cache.get("p1", "ana") is ana
    assert cache.get("p1", "ben") is None  # never Ana's friends
    assert cache.get("p1") is None  # nor in the public answer
    ben = fill(cache, "p1", 2, viewer="ben")
    assert cache.get("p1", "ana") is ana and cache.get("p1", "ben") is ben
    cache.invalidate(["p1"])  # a change of the product concerns every viewer
    assert cache.get("p1", "ana") is None and cache.get("p1", "ben") is None


def test_rendering_encodes_once_what_every_request_sends() -> None:
    cache, _ = make_cache()
    first = answer(cache, "p1", 1, viewer="ana")
    again = render({**first.state, "as_of": "later"}, private=True, max_age=2, read_at=0)
    assert first.etag == again.etag  # as_of is not part of the content's identity
    assert first.cache_control == "private, no-cache"
    assert first.head == ((b"etag", first.etag.encode()), (b"cache-control", b"private, no-cache"))
    assert first.length == (
        (b"content-length", str(len(first.body)).encode()),
        (b"content-type", b"application/json"),
    )
    assert answer(cache, "p1", 1).cache_control == "public, max-age=2"


# --- reading through the cache ---------------------------------------------------------------


class FakeReader:
    """Counts reads; each read waits for ``gate`` so tests can act while it is in flight."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str | None]] = []
        self.value = 1
        self.gate: asyncio.Event | None = None

    def proof(self, product_id: str) -> Proof:
        return Proof.model_validate(
            {
                "product_id": product_id,
                "bought": {"1h": self.value, "24h": self.value, "7d": self.value},
                "reviews": {},
                "shares": {},
                "as_of": "2026-01-01T00:00:00Z",
            }
        )

    async def _wait(self) -> None:
        if self.gate is not None:
            await self.gate.wait()

    async def read_many(self, product_ids: list[str]) -> list[Proof]:
        self.reads.extend((p, None) for p in product_ids)
        await self._wait()
        return [self.proof(p) for p in product_ids]

    async def read_personal(self, product_id: str, viewer: str):
        self.reads.append((product_id, viewer))
        await self._wait()
        return self.proof(product_id), (self.value, [f"friend-of-{viewer}"])


def proofs_with(reader: FakeReader) -> tuple[CachedProofs, ProofCache, Clock]:
    cache, clock = make_cache(max_age_s=1.0)
    return CachedProofs(reader, cache, public_max_age=2), cache, clock  # type: ignore[arg-type]


async def test_a_miss_reads_once_and_later_requests_are_answered_from_memory() -> None:
    reader = FakeReader()
    proofs, cache, _ = proofs_with(reader)
    first = await proofs.personal("ana", "p1")
    assert first.state["friends_bought"] == {"count": 1, "names": ["friend-of-ana"]}
    assert await proofs.personal("ana", "p1") is first
    assert (await proofs.public(["p1"]))[0].state["bought"]["24h"] == 1  # kept by the same read
    assert reader.reads == [("p1", "ana")]


async def test_concurrent_misses_of_one_answer_share_one_read() -> None:
    reader = FakeReader()
    reader.gate = asyncio.Event()
    proofs, _, _ = proofs_with(reader)
    waiting = [asyncio.create_task(proofs.personal("ana", "p1")) for _ in range(10)]
    await asyncio.sleep(0)
    reader.gate.set()
    answers = await asyncio.gather(*waiting)
    assert reader.reads == [("p1", "ana")]
    assert all(a is answers[0] for a in answers)


async def test_a_request_after_a_change_does_not_wait_for_a_read_that_started_before_it() -> None:
    reader = FakeReader()
    reader.gate = asyncio.Event()
    proofs, cache, _ = proofs_with(reader)
    before = asyncio.create_task(proofs.personal("ana", "p1"))
    await asyncio.sleep(0)
    reader.value = 2  # the processor writes …
    cache.invalidate(["p1"])  # … and announces
    after = asyncio.create_task(proofs.personal("ana", "p1"))
    await asyncio.sleep(0)
    reader.gate.set()
    await before
    assert (await after).state["friends_bought"]["count"] == 2
    assert len(reader.reads) == 2
    # the read that started before the change was not kept; the one after it was
    assert cache.get("p1", "ana").state["friends_bought"]["count"] == 2


async def test_an_entry_asked_for_late_in_its_life_is_read_again_ahead_of_expiry() -> None:
    reader = FakeReader()
    proofs, cache, clock = proofs_with(reader)
    old = await proofs.personal("ana", "p1")
    clock.now += 0.45
    assert await proofs.personal("ana", "p1") is old  # young: no read
    assert len(reader.reads) == 1
    clock.now += 0.5  # past 90 % of the maximum age: due, whatever the draw
    reader.value = 5
    assert await proofs.personal("ana", "p1") is old  # still served …
    await asyncio.sleep(0)  # … while a read runs in the background
    assert len(reader.reads) == 2
    clock.now += 0.2  # the old entry would have expired by now
    fresh = await proofs.personal("ana", "p1")
    assert fresh is not old and fresh.state["friends_bought"]["count"] == 5
    assert len(reader.reads) == 2


def test_entries_filled_together_are_not_all_refreshed_together() -> None:
    cache, clock = make_cache(max_age_s=1.0)
    due: list[tuple[str, str | None]] = []
    cache.on_aging = due.append
    for n in range(100):  # a cold start: everything read at once
        fill(cache, f"p{n}", n)
    clock.now += 0.45
    assert all(cache.get(f"p{n}") for n in range(100)) and due == []
    clock.now += 0.25  # 70 % of the maximum age: the refreshes are spread out
    assert all(cache.get(f"p{n}") for n in range(100))
    assert 0 < len(due) < 100
    clock.now += 0.25  # past 90 %: every entry asked for is due
    due.clear()
    assert all(cache.get(f"p{n}") for n in range(100)) and len(due) == 100


async def test_a_failed_read_reaches_the_request_and_nothing_is_kept() -> None:
    class Broken(FakeReader):
        async def read_personal(self, product_id: str, viewer: str):
            raise ConnectionError("redis is down")

    proofs, cache, _ = proofs_with(Broken())
    with pytest.raises(ConnectionError):
        await proofs.personal("ana", "p1")
    assert len(cache) == 0


# --- the fast path ---------------------------------------------------------------------------


def fast_path(
    origins: tuple[str, ...] = ("*",), rate: float = 1e9, burst: int = 10**9
) -> tuple[FastPath, ProofCache, ViewerTokens]:
    cache, _ = make_cache()
    tokens = ViewerTokens(SECRET, ttl_s=600)
    cors = Cors(allow_origins=origins, expose_headers=("ETag", "Retry-After"))
    return FastPath(cache, tokens, RateLimiter(rate, burst), cors, "notifier-test"), cache, tokens


def scope(
    path: str = "/v1/proof/products/p1",
    *headers: tuple[bytes, bytes],
    method: str = "GET",
    query: bytes = b"",
) -> dict:
    """An ASGI ``http`` scope as a server gives it (lower-case header names)."""
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"shop"), *headers],
        "client": ("10.1.2.3", 50000),
    }


def ask(
    fast: FastPath, path: str = "/v1/proof/products/p1", *headers: tuple[bytes, bytes]
) -> Answer | None:
    return fast.answer(scope(path, *headers))


def test_the_fast_path_answers_a_hit_with_the_routes_headers() -> None:
    fast, cache, tokens = fast_path()
    token, _ = tokens.mint("ana")
    mine = fill(cache, "p1", 7, viewer="ana")
    response = ask(fast, "/v1/proof/products/p1", (b"authorization", b"Bearer " + token.encode()))
    assert response == (
        200,
        [
            (b"etag", mine.etag.encode()),
            (b"cache-control", b"private, no-cache"),
            (b"vary", b"Authorization, Origin"),
            (b"content-length", str(len(mine.body)).encode()),
            (b"content-type", b"application/json"),
        ],
        mine.body,
    )


def test_the_fast_path_answers_304_when_the_client_has_it() -> None:
    fast, cache, _ = fast_path()
    public = fill(cache, "p1", 7)
    strong = public.etag.removeprefix("W/").encode()  # weak comparison: "x" matches W/"x"
    response = ask(fast, "/v1/proof/products/p1", (b"if-none-match", b'"other", ' + strong))
    assert response == (304, [*public.head, (b"vary", b"Authorization, Origin")], b"")


@pytest.mark.parametrize(
    ("origins", "origin", "expected"),
    [
        (("*",), b"https://shop.example", [(b"access-control-allow-origin", b"*"),
         (b"access-control-expose-headers", b"ETag, Retry-After")]),
        (("https://shop.example",), b"https://shop.example",
         [(b"access-control-expose-headers", b"ETag, Retry-After"),
          (b"access-control-allow-origin", b"https://shop.example")]),
        (("https://shop.example",), b"https://evil.example",
         [(b"access-control-expose-headers", b"ETag, Retry-After")]),
    ],
)  # fmt: skip
def test_the_fast_path_adds_the_cors_headers_of_starlettes_middleware(
    origins: tuple[str, ...], origin: bytes, expected: list[tuple[bytes, bytes]]
) -> None:
    fast, cache, _ = fast_path(origins)
    public = fill(cache, "p1", 7)
    response = ask(fast, "/v1/proof/products/p1", (b"origin", origin))
    assert response is not None
    status, headers, body = response
    assert headers == [*public.head, (b"vary", b"Authorization, Origin"), *public.length, *expected]
    assert (status, body) == (200, public.body)


def test_everything_but_a_plain_hit_falls_through_to_fastapi() -> None:
    fast, cache, tokens = fast_path()
    token, _ = tokens.mint("ana")
    fill(cache, "p1", 7)
    fill(cache, "p1", 7, viewer="ana")
    bearer = (b"authorization", b"Bearer " + token.encode())
    assert ask(fast, "/v1/proof/products/p1", bearer) is not None
    assert ask(fast, "/v1/proof/products/p2") is None  # a miss: FastAPI reads and fills
    assert ask(fast, "/v1/proof/products/p1", (b"authorization", b"Bearer vt1.bad.sig")) is None
    other, _ = tokens.mint("ben")  # valid, but nothing cached for Ben: never Ana's answer
    assert (
        ask(fast, "/v1/proof/products/p1", (b"authorization", b"Bearer " + other.encode())) is None
    )
    viewer_token = b"viewer_token=" + token.encode()
    assert fast.answer(scope("/v1/proof/products/p1", query=viewer_token)) is None
    assert ask(fast, "/v1/proof/products/-p1") is None  # invalid id: FastAPI's 422
    assert ask(fast, "/v1/proof/products/" + "p" * 129) is None
    assert ask(fast, "/v1/proof/products/p1/") is None
    assert ask(fast, "/v1/proof/products/p1", (b"content-length", b"3")) is None
    assert fast.answer(scope("/v1/proof/products/p1", method="POST")) is None
    assert fast.answer({**scope("/v1/proof/products/p1"), "root_path": "/api"}) is None
    cache.suspend()
    assert ask(fast, "/v1/proof/products/p1") is None


def test_a_remembered_token_still_expires() -> None:
    fast, cache, tokens = fast_path()
    token, claims = tokens.mint("ana")
    fill(cache, "p1", 7, viewer="ana")
    bearer = (b"authorization", b"Bearer " + token.encode())
    assert ask(fast, "/v1/proof/products/p1", bearer) is not None  # verified, remembered
    fast.clock = lambda: claims.expires_at  # the token's last second is over
    assert ask(fast, "/v1/proof/products/p1", bearer) is None  # FastAPI answers the 401


def test_a_rate_limited_client_falls_through_without_losing_a_token() -> None:
    fast, cache, _ = fast_path(rate=0.001, burst=2)
    fill(cache, "p1", 7)
    assert ask(fast) is not None and ask(fast) is not None
    assert ask(fast) is None  # FastAPI answers 429 with Retry-After
    assert fast.limiter.acquire("10.1.2.3") > 0  # the refusal took nothing


def test_a_non_ascii_signature_is_refused_not_an_error() -> None:
    fast, cache, tokens = fast_path()
    token, _ = tokens.mint("ana")
    fill(cache, "p1", 7, viewer="ana")
    forged = (token[:-2] + "éé").encode("latin-1")
    assert ask(fast, "/v1/proof/products/p1", (b"authorization", b"Bearer " + forged)) is None


def test_the_etag_ignores_as_of_and_sees_every_nested_change() -> None:
    # Given a proof answer and the same content read a second later
    state = {"product_id": "p1", "as_of": "2026-12-04T20:00:00Z",
             "bought": {"1h": 2, "24h": 5}, "reviews": {"histogram": {"5": 1, "4": 0}}}
    later = {**state, "as_of": "2026-12-04T20:00:01Z"}
    # When their ETags are taken, and those of answers differing deep inside
    deeper = {**state, "reviews": {"histogram": {"5": 1, "4": 1}}}
    reordered = dict(reversed(list(state.items())))
    # Then as_of and key order do not change it, a nested count does
    assert etag_of(state) == etag_of(later) == etag_of(reordered)
    assert etag_of(deeper) != etag_of(state)
    assert etag_of([state]) != etag_of([deeper])
    assert state["as_of"] == "2026-12-04T20:00:00Z"  # the answer itself is left whole
