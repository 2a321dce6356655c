"""Helpers for the notifier and storefront tests.

- Facts go in the way production puts them in: orders through the orders API, everything else
  as the contract events the catalog and social services emit, published to the real broker
  (so these tests depend on the event contracts, not on another service's HTTP API).
- ``extra_notifier`` runs one more notifier process beside the session stack, with settings of
  its own (the demo storefront on, a low rate limit, …), against the same broker and Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from contracts import events as ev
from socialproof.kafka import EventPublisher
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tests.support.waiting import wait_for
from tools.devstack import Stack, wait_ready

LOGS = Path(__file__).resolve().parent.parent.parent / "test-artifacts" / "stack" / "logs"


def viewer_token(stack: Stack, service_token: str, viewer: str) -> str:
    """A viewer token from the session stack's notifier (issued with the service token)."""
    response = httpx.post(
        f"{stack.url('notifier')}/v1/viewer-tokens",
        json={"viewer_id": viewer},
        headers={"Authorization": f"Bearer {service_token}"},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def publish(settings: Settings, *events: ev.Event) -> None:
    """Publish and wait for the broker's acknowledgement of every event."""

    async def run() -> None:
        publisher = EventPublisher(settings, client_id="tests-storefront")
        try:
            for event in events:
                await publisher.publish(event)
        finally:
            publisher.close()

    # On a thread of its own: the caller may be inside an event loop (Playwright's sync API).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def person(user_id: str, first_name: str, *, shares: bool = True) -> list[ev.Event]:
    """A user with a first name and consent (or not) to share purchases and show in the feed."""
    return [
        ev.UserProfileUpdated.create(
            {"user_id": user_id, "first_name": first_name}, producer="social"
        ),
        ev.PrivacySettingsChanged.create(
            {
                "user_id": user_id,
                "share_purchases_with_friends": shares,
                "show_in_activity_feed": shares,
            },
            producer="social",
        ),
    ]


def friends(a: str, b: str) -> ev.Event:
    return ev.FriendshipAdded.create({"user_id": a, "friend_id": b}, producer="social")


def product(product_id: str, name: str = "Test product") -> ev.Event:
    return ev.ProductUpserted.create(
        {"product_id": product_id, "name": name, "price": "19.99", "currency": "EUR"},
        producer="catalog",
    )


def order(
    orders_api: httpx.Client,
    user_id: str,
    product_id: str,
    timeout: float = 10,
    **extra: object,
) -> dict:
    """Place an order through the orders API. The product must have been published (``product``):
    the orders service learns products from the product topic, so a just-published product may
    still be unknown for a moment (422): retried until accepted. ``extra``: more body fields
    (``referral``, ``coupon``)."""
    body = {
        "user_id": user_id,
        "currency": "EUR",
        "lines": [{"product_id": product_id, "quantity": 1, "unit_price": "19.99"}],
        **extra,
    }

    def attempt() -> dict | None:
        response = orders_api.post("/v1/orders", json=body)
        if response.status_code == 422 and "product" in response.text:
            return None
        assert response.status_code == 201, response.text
        return response.json()

    return wait_for(attempt, timeout, f"an order of {product_id} to be accepted", interval=0.1)


@contextmanager
def extra_notifier(stack: Stack, **env: str) -> Iterator[str]:
    """Another notifier process with extra ``SOCIALPROOF_*`` settings; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    LOGS.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        name=f"notifier-{port}",
        argv=service_argv("notifier"),
        env={**stack.env, "SOCIALPROOF_NOTIFIER_PORT": str(port), **env},
        echo=False,
        log_path=LOGS / f"notifier-extra-{port}.log",
    ).start()
    try:
        wait_ready(f"{url}/readyz", 30, "the extra notifier", proc)
        yield url
    finally:
        proc.stop()
