"""Live push against the real stack: SSE and WebSocket carry ids, the current state first (also on
reconnect with Last-Event-ID), friend data only for the token's viewer, at most 4 updates per
second per product (coalesced to the latest), and heartbeats; and the viewer's own notification
stream (``/v1/me/stream``): that viewer's notes only, what a reconnect missed, 401 without a
token."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest
import redis as redis_sync
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from contracts.views import Keys
from socialproof.settings import Settings
from tests.support.sse import SseClient
from tests.support.storefront import (
    extra_notifier,
    friends,
    order,
    person,
    product,
    publish,
    viewer_token,
)
from tools.devstack import Stack


def test_sse_pushes_friend_counts_to_that_viewer_only(
    stack: Stack, settings: Settings, orders_api: httpx.Client, service_token: str, uid
) -> None:
    ana, ben, dan, item = uid("ana"), uid("ben"), uid("dan"), uid("p")
    publish(settings, product(item), *person(ben, "Ben"), friends(ana, ben))
    base = f"{stack.url('notifier')}/v1/proof/stream?products={item}"
    with (
        SseClient(f"{base}&viewer_token={viewer_token(stack, service_token, ana)}") as mine,
        SseClient(f"{base}&viewer_token={viewer_token(stack, service_token, dan)}") as theirs,
        SseClient(base) as anonymous,
    ):
        # Given the current state first, with an id
        first = mine.next()
        assert first.id and first.json()["friends_bought"] == {"count": 0, "names": []}
        assert "friends_bought" not in anonymous.next().json()
        theirs.next()
        # When Ana's friend Ben buys it
        order(orders_api, ben, item)
        # Then Ana's stream names Ben, Dan's stream shows no friend, the public one has none
        update = mine.next_matching(lambda e: e.json()["friends_bought"]["count"] == 1, timeout=10)
        assert update.json()["friends_bought"]["names"] == ["Ben"]
        assert int(update.id) > int(first.id)
        other = theirs.next_matching(lambda e: e.json()["bought"]["24h"] == 1, timeout=10)
        assert other.json()["friends_bought"] == {"count": 0, "names": []}
        public = anonymous.next_matching(lambda e: e.json()["bought"]["24h"] == 1, timeout=10)
        assert "friends_bought" not in public.json()


def test_reconnecting_with_last_event_id_gets_the_current_state_at_once(
    stack: Stack, settings: Settings, orders_api: httpx.Client, uid
) -> None:
    item = uid("p")
    publish(settings, product(item))
    url = f"{stack.url('notifier')}/v1/proof/stream?products={item}"
    with SseClient(url) as sse:
        seen = sse.next()
    # Given a client that saw event `seen.id` and then lost its connection, while a sale happened
    order(orders_api, uid("u"), item)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the sale reached the serving store
        if httpx.get(f"{stack.url('notifier')}/v1/proof/products/{item}").json()["bought"]["24h"]:
            break
        time.sleep(0.05)
    # When it reconnects with Last-Event-ID
    with SseClient(url, headers={"Last-Event-ID": seen.id}) as sse:
        now = sse.next(timeout=2)
    # Then the current state comes at once (not the stale one), with ids continuing after it
    assert now.json()["bought"]["24h"] == 1
    assert int(now.id) == int(seen.id) + 1


def test_a_busy_product_is_pushed_at_most_four_times_a_second_with_the_latest_state(
    stack: Stack, redis_client, uid
) -> None:
    # The processor announces at most one change per product per batch, and the stack's worker
    # is not fast enough to change a product 50 times a second; so this test changes the serving
    # store and announces as the processor does (the layout in contracts.views), just faster.
    item, changes = uid("hot"), 50
    keys = Keys("sp")

    def change(n: int) -> None:
        redis_client.zadd(keys.buyers(item), {f"buyer-{n}": int(time.time() * 1000)})
        redis_client.publish(keys.changes_channel, json.dumps([item]))

    with SseClient(f"{stack.url('notifier')}/v1/proof/stream?products={item}") as sse:
        assert sse.next().json()["bought"]["24h"] == 0
        # When the product changes 50 times in one second (paced load, in the background so
        # that this thread notes each message as it arrives)
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            load = pool.submit(
                lambda: [
                    (_wait_until(started + n / changes), change(n)) for n in range(1, changes + 1)
                ]
            )
            arrivals = []
            while not arrivals or arrivals[-1][1] < changes:
                event = sse.next(timeout=5)
                arrivals.append((time.monotonic(), event.json()["bought"]["24h"]))
            load.result()
    # Then updates come paced (>= 250 ms apart, some slack for the clock): about 5 instead of
    # 50, and the last one has every change: coalesced to the latest, nothing lost
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(gap >= 0.2 for gap in gaps), gaps
    assert 2 <= len(arrivals) <= 7, arrivals
    counts = [c for _, c in arrivals]
    assert counts == sorted(counts)


def _wait_until(at: float) -> None:
    """Paces generated load (this is not waiting for a result)."""
    time.sleep(max(0.0, at - time.monotonic()))


def test_websocket_carries_the_same_messages(
    stack: Stack, settings: Settings, orders_api: httpx.Client, service_token: str, uid
) -> None:
    ana, ben, item = uid("ana"), uid("ben"), uid("p")
    publish(settings, product(item), *person(ben, "Ben"), friends(ana, ben))
    ws_base = stack.url("notifier").replace("http://", "ws://")
    token = viewer_token(stack, service_token, ana)
    with ws_connect(f"{ws_base}/v1/proof/ws?products={item}&viewer_token={token}") as ws:
        first = json.loads(ws.recv(timeout=5))
        assert first["type"] == "proof" and first["id"] == "1"
        assert first["data"]["product_id"] == item
        assert first["data"]["friends_bought"]["count"] == 0
        order(orders_api, ben, item)
        deadline = time.monotonic() + 10
        while True:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message["type"] == "proof" and message["data"]["friends_bought"]["count"] == 1:
                break
        assert message["data"]["friends_bought"]["names"] == ["Ben"]
        assert int(message["id"]) > 1


@pytest.mark.parametrize(
    ("query", "code", "error"),
    [
        ("products=p1&viewer_token=vt1.x.y", 4401, "invalid_viewer_token"),
        ("products=,", 4422, "validation_failed"),
    ],
)
def test_websocket_refuses_bad_requests_with_a_reason(
    stack: Stack, query: str, code: int, error: str
) -> None:
    ws_base = stack.url("notifier").replace("http://", "ws://")
    with ws_connect(f"{ws_base}/v1/proof/ws?{query}") as ws:
        assert json.loads(ws.recv(timeout=5))["error"] == error
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def test_idle_streams_get_heartbeats(stack: Stack, uid) -> None:
    with extra_notifier(stack, SOCIALPROOF_SSE_HEARTBEAT_S="0.3") as url:
        item = uid("quiet")
        # SSE: a comment line (": ping") keeps proxies and the browser from timing out
        with httpx.stream("GET", f"{url}/v1/proof/stream?products={item}", timeout=5) as response:
            lines = response.iter_lines()
            started = time.monotonic()
            assert any(line.startswith(": ping") for line in _until(lines, started + 3))
        # WebSocket: a heartbeat message
        with ws_connect(f"{url.replace('http://', 'ws://')}/v1/proof/ws?products={item}") as ws:
            assert json.loads(ws.recv(timeout=3))["type"] == "proof"
            assert json.loads(ws.recv(timeout=3)) == {"type": "heartbeat"}


def _until(lines, deadline: float):
    for line in lines:
        yield line
        if time.monotonic() > deadline:
            return


# --- the viewer's own notifications (issue #19) ------------------------------------------

# the store is written and announced as the processor does (issue #19's layout)
USER_CHANGES = "sp:user-changes"


def test_the_me_stream_carries_the_viewers_own_notes_and_what_a_reconnect_missed(
    stack: Stack, redis_client: redis_sync.Redis, service_token: str, uid
) -> None:
    keys, item, now = Keys("sp"), uid("p"), int(time.time() * 1000)
    ana, ben = uid("ana"), uid("ben")
    for viewer in (ana, ben):  # both allow question notifications
        redis_client.hset(keys.consent(viewer), mapping={"q": 1})

    def note(viewer: str, question: str, ms: int, hidden: int = 0) -> None:
        redis_client.hset(
            f"sp:question:{question}", mapping={"p": item, "u": "asker", "ts": ms, "hidden": hidden}
        )
        redis_client.zadd(f"sp:notes:{viewer}", {question: ms})

    def expected(question: str, ms: int) -> dict:
        return {"kind": "question", "question_id": question, "product_id": item, "at": ms}

    def seen(event) -> dict:  # the note with its time as event ms
        return {
            **event.json(),
            "at": round(datetime.fromisoformat(event.json()["at"]).timestamp() * 1000),
        }

    q_before, q_ana, q_ben = uid("q0"), uid("q1"), uid("q2")
    note(ana, q_before, now - 60_000)  # before Ana connects without an id: not sent
    stream = f"{stack.url('notifier')}/v1/me/stream"
    ana_token, ben_token = (viewer_token(stack, service_token, v) for v in (ana, ben))
    mine = {"Authorization": f"Bearer {ana_token}"}
    with (
        SseClient(stream, headers=mine) as ana_sse,
        SseClient(f"{stream}?viewer_token={ben_token}") as ben_sse,
    ):
        # Given both streams are live
        assert ana_sse.next().event == "ready" and ben_sse.next().event == "ready"
        # When a question reaches each viewer's notes and the processor announces Ana only
        note(ana, q_ana, now)
        note(ben, q_ben, now)
        redis_client.publish(USER_CHANGES, json.dumps([ana]))
        # Then Ana's stream carries her note, with an id
        got = ana_sse.next()
        assert (got.event, seen(got)) == ("note", expected(q_ana, now)) and got.id
        # And Ben's carries nothing of Ana's: only his own, once he is announced
        redis_client.publish(USER_CHANGES, json.dumps([ben]))
        theirs = ben_sse.next()
        assert (theirs.event, seen(theirs)) == ("note", expected(q_ben, now))
        assert ana_sse.events.empty()
    # Given Ana was away while two more questions (and one since hidden) reached her notes
    q_late, q_later, q_hidden = uid("q3"), uid("q4"), uid("q5")
    note(ana, q_late, now + 1)
    note(ana, q_later, now + 2)
    note(ana, q_hidden, now + 3, hidden=1)
    redis_client.publish(USER_CHANGES, json.dumps([ana]))
    # When she reconnects with the last id she saw, Then she gets exactly what she missed
    with SseClient(stream, headers={**mine, "Last-Event-ID": got.id}) as again:
        missed = [again.next(), again.next()]
        assert [seen(e) for e in missed] == [expected(q_late, now + 1), expected(q_later, now + 2)]
        ready = again.next()
        assert ready.event == "ready" and ready.id == missed[-1].id
    # And once she no longer allows question notifications, not even a reconnect from the start
    # gets one
    redis_client.hset(keys.consent(ana), mapping={"q": 0})
    with SseClient(stream, headers={**mine, "Last-Event-ID": "0"}) as withdrawn:
        assert withdrawn.next().event == "ready"
    # And without a viewer token (or with a bad one) the stream is refused
    for refused in (
        httpx.get(stream, timeout=5),
        httpx.get(stream, params={"viewer_token": "vt1.x.y"}, timeout=5),
    ):
        assert refused.status_code == 401, refused.text
    assert httpx.get(stream, timeout=5).json()["error"] == "viewer_token_required"
