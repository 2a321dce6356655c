"""Unit tests of the notifier's building blocks: viewer tokens, the rate limiter, mailboxes, the
hub's per-viewer doorbells and the note stream's cursors."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from services.notifier.hub import Hub, Mailbox
from services.notifier.ratelimit import RateLimiter
from services.notifier.tokens import InvalidViewerToken, ViewerTokens, derive_secret

SECRET = b"0123456789abcdef0123456789abcdef"


def test_a_viewer_token_names_its_viewer_until_it_expires() -> None:
    tokens = ViewerTokens(SECRET, ttl_s=60)
    token, claims = tokens.mint("u1", now=1_000)
    assert claims.expires_at == 1_060
    assert tokens.verify(token, now=1_059).viewer_id == "u1"
    with pytest.raises(InvalidViewerToken, match="expired"):
        tokens.verify(token, now=1_060)


def test_tampered_or_foreign_tokens_are_refused() -> None:
    tokens = ViewerTokens(SECRET, ttl_s=60)
    token, _ = tokens.mint("u1", now=1_000)
    other, _ = tokens.mint("u2", now=1_000)
    head, _, signature = token.split(".")
    forged = f"{head}.{other.split('.')[1]}.{signature}"  # u2's claims, u1's signature
    for bad in (forged, token[:-1] + ("A" if token[-1] != "A" else "B"), "service-token", ""):
        with pytest.raises(InvalidViewerToken):
            tokens.verify(bad, now=1_001)
    # another key (e.g. after rotating the service token) refuses old tokens
    with pytest.raises(InvalidViewerToken, match="signature"):
        ViewerTokens(derive_secret("another-service-token"), 60).verify(token, now=1_001)


def test_a_token_with_non_ascii_characters_is_refused_not_an_error() -> None:
    tokens = ViewerTokens(SECRET, ttl_s=60)
    token, _ = tokens.mint("u1", now=1_000)
    for bad in (token[:-2] + "éé", "vt1.é.é"):
        with pytest.raises(InvalidViewerToken):
            tokens.verify(bad, now=1_001)


def test_the_derived_key_depends_on_the_service_token() -> None:
    assert derive_secret("a" * 20) == derive_secret("a" * 20) != derive_secret("b" * 20)
    assert derive_secret("a" * 20) != b"a" * 20  # never the service token itself


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert [limiter.acquire("c", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("c", now=0.0) == pytest.approx(0.5)
    assert limiter.acquire("other", now=0.0) == 0.0  # per client
    assert limiter.acquire("c", now=0.5) == 0.0  # refilled one token
    assert limiter.retry_after_header(0.2) == "1"


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_clients=100)
    for i in range(1_000):
        limiter.acquire(f"client-{i}", now=float(i))
    assert len(limiter) == 100


async def test_a_mailbox_keeps_only_the_latest_state_per_product() -> None:
    box = Mailbox(frozenset({"p1", "p2"}))
    for n in range(10_000):
        box.offer("p1", {"n": n})
    box.offer("p2", {"n": -1})
    assert await box.take(timeout=0.1) == {"p1": {"n": 9_999}, "p2": {"n": -1}}
    assert await box.take(timeout=0.01) == {}


async def test_a_mailbox_paces_each_product_and_coalesces() -> None:
    box = Mailbox(frozenset({"p1", "p2"}), min_interval_s=0.2)
    loop = asyncio.get_running_loop()
    box.offer("p1", {"n": 1})
    assert await box.take(timeout=1) == {"p1": {"n": 1}}
    sent_at = loop.time()
    box.offer("p1", {"n": 2})
    box.offer("p1", {"n": 3})
    box.offer("p2", {"n": 1})  # another product is not held back by p1's pace
    assert await box.take(timeout=1) == {"p2": {"n": 1}}
    assert await box.take(timeout=1) == {"p1": {"n": 3}}
    assert loop.time() - sent_at >= 0.19


async def test_a_mailbox_times_each_change_from_its_first_offer_to_its_send() -> None:
    # the push stage of socialproof_pipeline_stage_seconds: from the oldest unsent offer of a
    # product (coalesced ones keep that time) to the send, so pacing shows where it happens
    def pushed() -> tuple[float, float]:
        labels = {"stage": "push"}
        count = REGISTRY.get_sample_value("socialproof_pipeline_stage_seconds_count", labels)
        total = REGISTRY.get_sample_value("socialproof_pipeline_stage_seconds_sum", labels)
        return count or 0.0, total or 0.0

    box = Mailbox(frozenset({"p1"}), min_interval_s=0.2)
    box.mark_sent(["p1"])  # the initial state: the pace starts here
    count_0, sum_0 = pushed()
    box.offer("p1", {"n": 1})
    box.offer("p1", {"n": 2})
    assert await box.take(timeout=1) == {"p1": {"n": 2}}
    count_1, sum_1 = pushed()
    assert count_1 == count_0 + 1  # one send, one observation
    assert 0.19 <= sum_1 - sum_0 < 1  # it waited for the pace, from the first offer on


async def test_closing_a_mailbox_wakes_its_reader() -> None:
    box = Mailbox(frozenset({"p1"}))
    waiting = asyncio.create_task(box.take(timeout=30))
    await asyncio.sleep(0)
    box.close()
    assert await asyncio.wait_for(waiting, 1) == {}


# --- the viewer's own notification stream (issue #19) --------------------------------------


async def test_a_viewer_announcement_wakes_only_that_viewers_connections_once() -> None:
    from prometheus_client import REGISTRY

    def live() -> float:
        return REGISTRY.get_sample_value("socialproof_live_connections") or 0.0

    hub = Hub(redis=None, channel="c", read_encoded=None, user_channel="u")  # type: ignore[arg-type]
    before = live()
    ana, ana_too, ben = hub.watch_viewer("ana"), hub.watch_viewer("ana"), hub.watch_viewer("ben")
    assert live() == before + 3 and hub.connections == 3
    for _ in range(3):  # three batches before the connection reads: one wake
        hub.ring(["ana", "nobody"])
    assert await ana.wait(0.01) is True and await ana_too.wait(0.01) is True
    assert await ana.wait(0.01) is False  # coalesced
    assert await ben.wait(0.01) is False  # never Ana's announcement
    hub.unwatch_viewer(ana)
    hub.unwatch_viewer(ana)  # twice (error path and end): counted once
    assert live() == before + 2 and set(hub.viewers) == {"ana", "ben"}
    hub.close_all()
    assert ana_too.closed and ben.closed
    hub.unwatch_viewer(ana_too)
    hub.unwatch_viewer(ben)
    assert live() == before and not hub.viewers


def test_note_stream_ids_are_cursors_and_foreign_ids_are_ignored() -> None:
    from services.notifier.api.me import START, format_cursor, parse_cursor

    assert parse_cursor("1800000000000-q:1-a") == (1_800_000_000_000, "q:1-a")
    assert parse_cursor("0") == START and format_cursor(START) == b"0"
    assert format_cursor((5, "q-1")) == b"5-q-1" and parse_cursor("5-q-1") == (5, "q-1")
    for foreign in (None, "", "7", "abc-q", "-q", "1e3-q", "١٢-q", "9" * 16 + "-q"):
        assert parse_cursor(foreign) is None, foreign


async def test_the_note_stream_answers_503_when_the_store_is_unavailable() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from services.notifier.api.me import NoteFeed
    from services.notifier.api.sse import SseResponse

    class DownReader:
        async def notes(self, viewer: str) -> list:
            raise RedisConnectionError("connection refused")

    hub = Hub(redis=None, channel="c", read_encoded=None)  # type: ignore[arg-type]
    feed = NoteFeed(hub, DownReader(), "ana", None)  # type: ignore[arg-type]
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    await SseResponse(feed, 15, expires_at=2**40)({"type": "http"}, receive, send)
    assert sent[0]["status"] == 503
    assert b"retry-after" in dict(sent[0]["headers"])
    assert hub.connections == 0  # the failed connection is not counted as live
