"""The read API's cache and fast path against real Redis, the real processor and real notifier
processes: a change the processor announces is read again at once (not when the cache entry
expires), an event-time window that expires without any event shows within the cache's maximum
age, the fast path answers byte for byte what FastAPI answers, and a notifier with several
processes on one port serves, counts and stops as one."""

from __future__ import annotations

import os
import socket
import time

import httpx
import redis as redis_sync

from contracts.views import HOUR_MS, Keys
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tests.support.storefront import (
    extra_notifier,
    friends,
    order,
    person,
    product,
    publish,
    viewer_token,
)
from tests.support.waiting import wait_for
from tools.devstack import Stack, wait_ready


def cached_read(client: httpx.Client, path: str) -> dict:
    """A read the notifier answers from its cache: two reads in a row carry the same ``as_of``
    (the cache is used once the notifier's change subscription stands)."""

    def twice() -> dict | None:
        first, second = client.get(path), client.get(path)
        assert first.status_code == second.status_code == 200, first.text
        return first.json() if first.json()["as_of"] == second.json()["as_of"] else None

    return wait_for(twice, 10, f"{path} to be answered from the cache")


def test_a_change_the_processor_announces_is_read_again_at_once(
    stack: Stack,
    settings: Settings,
    orders_api: httpx.Client,
    service_token: str,
    redis_client: redis_sync.Redis,
    uid,
) -> None:
    # Given Ana, whose friend Ben shares purchases, and a product nobody bought yet, read
    # through a notifier whose cache entries would live a whole minute
    ana, ben, item = uid("ana"), uid("ben"), uid("p")
    publish(settings, product(item), *person(ana, "Ana"), *person(ben, "Ben"), friends(ana, ben))
    token = viewer_token(stack, service_token, ana)
    with (
        extra_notifier(stack, SOCIALPROOF_PROOF_CACHE_MAX_AGE_S="60") as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as ana_reads,
        httpx.Client(base_url=url) as public_reads,
    ):
        path = f"/v1/proof/products/{item}"
        mine = cached_read(ana_reads, path)
        assert mine["bought"]["24h"] == 0 and mine["friends_bought"]["count"] == 0
        assert cached_read(public_reads, path)["bought"]["24h"] == 0
        changes = redis_client.pubsub(ignore_subscribe_messages=True)
        changes.subscribe(Keys(settings.redis_namespace).changes_channel)
        try:
            # When Ben buys it, and the processor announces the product
            order(orders_api, ben, item)

            def announced() -> bool:
                message = changes.get_message(timeout=0.2)
                return bool(message) and item in message["data"]

            wait_for(announced, 20, f"the processor to announce {item}")
        finally:
            changes.close()
        announced_at = time.monotonic()
        # Then both answers change as soon as the notifier has the announcement: far sooner
        # than the minute the cached entries had left
        now_mine = wait_for(
            lambda: (r := ana_reads.get(path).json())["friends_bought"]["count"] == 1 and r,
            2,
            "Ana's answer to show Ben's purchase",
        )
        assert now_mine["bought"]["24h"] == 1
        assert now_mine["friends_bought"]["names"] == ["Ben"]
        wait_for(lambda: public_reads.get(path).json()["bought"]["24h"] == 1, 2, "the public one")
        assert time.monotonic() - announced_at < 2


def test_a_window_that_expires_without_any_event_shows_within_the_max_age(
    stack: Stack, namespace: str, redis_client: redis_sync.Redis
) -> None:
    # Given a notifier with a 1 s cache, and then a purchase that leaves the last-hour window in
    # 2 s, written with no announcement (time passing is no event)
    keys, item = Keys(namespace), "p-window"
    max_age = 1.0
    with (
        extra_notifier(
            stack,
            SOCIALPROOF_REDIS_NAMESPACE=namespace,
            SOCIALPROOF_PROOF_CACHE_MAX_AGE_S=str(max_age),
        ) as url,
        httpx.Client(base_url=url) as client,
    ):
        expires_ms = int(time.time() * 1000) + 2_000
        redis_client.zadd(keys.buyers(item), {"u1": expires_ms - HOUR_MS})
        path = f"/v1/proof/products/{item}"
        before = cached_read(client, path)
        assert time.time() * 1000 < expires_ms, "the set-up took too long to see the window"
        assert before["bought"] == {"1h": 1, "24h": 1, "7d": 1}
        # When reads keep coming (each answered from the cache while it is fresh enough)
        after = wait_for(
            lambda: (r := client.get(path).json())["bought"]["1h"] == 0 and r,
            10,
            "the purchase to leave the last-hour window",
        )
        # Then the expiry shows at most the cache's max age (plus a poll) after it happened
        late = time.time() - expires_ms / 1000
        assert late < max_age + 0.3, f"the expired window showed {late:.2f} s late"
        assert after["bought"] == {"1h": 0, "24h": 1, "7d": 1}


# --- the fast path, in the notifier as served (granian) --------------------------------------


def raw_get(port: int, path: str, *headers: str) -> bytes:
    """One HTTP/1.1 request on a fresh connection; the whole response as bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        lines = [f"GET {path} HTTP/1.1", "Host: shop", *headers, "", ""]
        conn.sendall("\r\n".join(lines).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        return data


def without_date(response: bytes) -> bytes:
    return b"\r\n".join(line for line in response.split(b"\r\n") if not line.startswith(b"date: "))


def fast_answers(url: str) -> int:
    """How many reads the notifier's fast path answered (its Prometheus counter)."""
    return int(
        next(
            float(line.rsplit(" ", 1)[1])
            for line in httpx.get(f"{url}/metrics").text.splitlines()
            if line.startswith("socialproof_notifier_fast_path_answers_total ")
        )
    )


def test_the_fast_path_answers_exactly_what_fastapi_answers(
    stack: Stack,
    settings: Settings,
    namespace: str,
    redis_client: redis_sync.Redis,
) -> None:
    keys = Keys(namespace)
    now_ms = int(time.time() * 1000)
    for item in ("p0", "p1", "p2", "p3", "p4", "p5"):
        redis_client.zadd(keys.buyers(item), {"u1": now_ms, "u2": now_ms - 1000})
        redis_client.sadd(keys.consenting_buyers(item), "u1")
    redis_client.sadd(keys.friends("ana"), "u1")
    redis_client.hset(keys.name("u1"), "n", "Ben")
    with extra_notifier(
        stack,
        SOCIALPROOF_REDIS_NAMESPACE=namespace,
        SOCIALPROOF_CORS_ORIGINS="https://shop.example",
    ) as url:
        port = int(url.rsplit(":", 1)[1])

        def get(path: str, *headers: str) -> tuple[bytes, bool]:
            """The response, and whether the fast path answered it."""
            before = fast_answers(url)
            response = raw_get(port, path, *headers)
            return response, fast_answers(url) == before + 1

        # the cache is used once the notifier's change subscription stands
        wait_for(lambda: get("/v1/proof/products/p0")[1], 10, "the fast path to answer")
        issued = httpx.post(
            f"{url}/v1/viewer-tokens",
            json={"viewer_id": "ana"},
            headers={"Authorization": f"Bearer {settings.require_service_token()}"},
        )
        bearer = f"Authorization: Bearer {issued.json()['token']}"
        for path, headers in [
            ("/v1/proof/products/p1", [bearer]),
            ("/v1/proof/products/p2", []),
            ("/v1/proof/products/p3", [bearer, "Origin: https://shop.example"]),
            ("/v1/proof/products/p4", ["Origin: https://other.example"]),
        ]:
            (first, fast_first), (second, fast_second) = get(path, *headers), get(path, *headers)
            # FastAPI answered the first (a miss, which filled the cache), the fast path the next
            assert (fast_first, fast_second) == (False, True), (path, headers)
            assert without_date(first) == without_date(second), (path, headers)
            assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        mine, _ = get("/v1/proof/products/p1", bearer)
        assert b'"friends_bought":{"count":1,"names":["Ben"]}' in mine
        assert b"access-control-allow-origin: https://shop.example" in raw_get(
            port, "/v1/proof/products/p3", bearer, "Origin: https://shop.example"
        )
        # If-None-Match: the fast path's 304 (a hit) and FastAPI's (after an announcement)
        fresh = raw_get(port, "/v1/proof/products/p5", bearer)
        etag = next(
            line.split(b": ", 1)[1].decode()
            for line in fresh.split(b"\r\n")
            if line.startswith(b"etag: ")
        )
        conditional = ("/v1/proof/products/p5", bearer, f"If-None-Match: {etag}")
        from_fast_path, answered = get(*conditional)
        assert answered
        redis_client.publish(keys.changes_channel, '["p5"]')  # no real change, but announced

        def from_fastapi() -> bytes | None:
            response, fast = get(*conditional)
            return None if fast else response

        again = wait_for(from_fastapi, 5, "FastAPI to answer once p5 was announced")
        assert from_fast_path.startswith(b"HTTP/1.1 304 Not Modified\r\n")
        assert without_date(from_fast_path) == without_date(again)
        # a refused token is FastAPI's 401 every time
        refused, answered = get("/v1/proof/products/p1", "Authorization: Bearer vt1.x.y")
        assert refused.startswith(b"HTTP/1.1 401") and not answered


def test_several_processes_share_the_port_count_together_and_stop_together(
    stack: Stack, tmp_path
) -> None:
    port = free_port()
    proc = ManagedProcess(
        name="notifier-2p",
        argv=service_argv("notifier"),
        env={
            **stack.env,
            "SOCIALPROOF_NOTIFIER_PORT": str(port),
            "SOCIALPROOF_NOTIFIER_PROCESSES": "2",
        },
        echo=False,
        log_path=tmp_path / "notifier-2p.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz", 30, "the 2-process notifier", proc)
        assert proc.proc is not None
        children = wait_for(
            lambda: len(kids := children_of(proc.proc.pid)) == 2 and kids, 15, "2 server processes"
        )
        # Every connection is its own 4-tuple: the kernel spreads them over both processes
        for _ in range(40):
            with httpx.Client(base_url=url) as client:
                assert client.get("/v1/proof/products/p-2p").status_code == 200
        served = wait_for(lambda: products_requests(url) >= 40 and products_requests(url), 5, "40")
        assert served == products_requests(url) == 40  # whichever process answers /metrics
    finally:
        code = proc.stop()
    assert code == 0
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]


def children_of(pid: int) -> list[int]:
    """The server processes a supervisor spawned (not multiprocessing's resource tracker)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    spawned = b"spawn_main" in cmdline.read()
            except OSError:
                continue
            if parent == pid and spawned:
                kids.append(int(entry))
    return kids


def products_requests(url: str) -> int:
    text = httpx.get(f"{url}/metrics").text
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("socialproof_http_requests_total{")
            and 'route="/v1/proof/products/{product_id}"' in line
        )
    )
