"""Privacy, end to end through the public APIs of the session stack: a user who withdraws consent,
or is erased, disappears from every friend count, friend name list, activity feed and live
stream within 1 s of the social service's answer.

(That a full replay of the event log keeps them out is tested on a private backend in
tests/security/test_replay_privacy.py, because a rebuild moves the namespace pointer of its
Redis.)
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from socialproof.settings import Settings
from tests.security.test_authorization import mint
from tests.support.services import api
from tests.support.sse import SseClient
from tests.support.storefront import order, product, publish
from tools.devstack import Stack

pytestmark = pytest.mark.integration

WITHIN_S = 1.0


def gone_within(probe, limit: float, what: str) -> float:
    """Seconds until ``probe()`` is true, polled every 20 ms; fails after ``limit`` (plus a
    margin to report the real figure)."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > limit + 4:
            raise AssertionError(f"{what}: still visible {limit + 4:.0f}s later")
        time.sleep(0.02)
    return time.monotonic() - started


def test_withdrawn_consent_and_erasure_disappear_everywhere_within_a_second(
    stack: Stack, settings: Settings, service_token: str
) -> None:
    run = uuid.uuid4().hex[:8]
    viewer, fay, gil, item = f"v-{run}", f"fay-{run}", f"gil-{run}", f"p-priv-{run}"
    fay_name, gil_name = f"Fay{run}", f"Gil{run}"
    notifier = stack.url("notifier")
    publish(settings, product(item))
    with (
        api(stack, "social", service_token) as social,
        api(stack, "orders", service_token) as orders,
        httpx.Client(base_url=notifier, timeout=5) as reads,
    ):
        # Given Fay and Gil, friends of the viewer, who share their purchases and activity
        everything = {"share_purchases_with_friends": True, "show_in_activity_feed": True}
        for user, name in ((fay, fay_name), (gil, gil_name)):
            assert social.put(f"/v1/users/{user}/profile", json={"first_name": name}).is_success
            assert social.put(f"/v1/users/{user}/privacy", json=everything).is_success
            assert social.put(f"/v1/users/{viewer}/friends/{user}").is_success
            order(orders, user, item)
        token = mint(stack, service_token, viewer)
        mine = {"Authorization": f"Bearer {token}"}

        def friends_seen() -> dict:
            return reads.get(f"/v1/proof/products/{item}", headers=mine).json()["friends_bought"]

        def feed_names() -> str:
            return reads.get("/v1/activity", params={"products": item}).text

        def shown(name: str) -> bool:
            seen = friends_seen()
            return name in seen["names"] or name in feed_names()

        start = time.monotonic()
        while friends_seen()["count"] != 2 or gil_name not in feed_names():
            assert time.monotonic() - start < 10, (friends_seen(), feed_names())
            time.sleep(0.05)
        assert sorted(friends_seen()["names"]) == sorted([fay_name, gil_name])
        public_before = reads.get(f"/v1/proof/products/{item}").json()["bought"]["24h"]
        assert public_before == 2
        with SseClient(f"{notifier}/v1/proof/stream?products={item}&viewer_token={token}") as sse:
            assert sse.next().json()["friends_bought"]["count"] == 2
            # When Fay withdraws her consent
            assert social.put(f"/v1/users/{fay}/privacy", json={
                "share_purchases_with_friends": False, "show_in_activity_feed": False,
            }).is_success
            t_consent = time.monotonic()
            # Then within a second she is out of the friend count, the names and the feed
            consent_s = gone_within(lambda: not shown(fay_name) and friends_seen()["count"] == 1,
                                    WITHIN_S, "Fay after withdrawing consent")
            # And the viewer's live stream says so too
            sse.next_matching(lambda e: e.json()["friends_bought"]["count"] == 1,
                              timeout=max(0.05, t_consent + WITHIN_S - time.monotonic()))
            consent_stream_s = time.monotonic() - t_consent
            # When Gil is erased
            assert social.delete(f"/v1/users/{gil}").is_success
            t_erased = time.monotonic()
            # Then within a second he is out of every count, name list and feed
            erased_s = gone_within(
                lambda: not shown(gil_name) and friends_seen()["count"] == 0
                and reads.get(f"/v1/proof/products/{item}").json()["bought"]["24h"] == 1,
                WITHIN_S, "Gil after erasure",
            )
            sse.next_matching(lambda e: e.json()["friends_bought"]["count"] == 0
                              and e.json()["bought"]["24h"] == 1,
                              timeout=max(0.05, t_erased + WITHIN_S - time.monotonic()))
            erased_stream_s = time.monotonic() - t_erased
        # And the social service's friend list no longer names him
        listed = social.get(f"/v1/users/{viewer}/friends").json()["items"]
        assert [f["user_id"] for f in listed] == [fay]
    print(f"\nconsent withdrawn: gone from reads in {consent_s:.2f}s, stream {consent_stream_s:.2f}s;"
          f" erased: reads {erased_s:.2f}s, stream {erased_stream_s:.2f}s")
    assert consent_s <= WITHIN_S and erased_s <= WITHIN_S
