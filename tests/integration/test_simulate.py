"""``socialproof simulate`` against the real stack: the services accept what it sends and the
storefront's counters move."""

from __future__ import annotations

import httpx

from contracts.views import Keys
from tests.support.waiting import wait_for_async
from tools.devstack import Stack
from tools.simulate import Targets, simulate_async


async def test_the_simulator_drives_real_traffic_into_the_storefront(
    stack: Stack, service_token: str, redis_client
) -> None:
    # Given the running services
    targets = Targets(
        catalog=stack.url("catalog"),
        orders=stack.url("orders"),
        social=stack.url("social"),
        token=service_token,
    )
    # When the simulator sets up a small world, warms up and runs for a second
    sim = await simulate_async(targets, rate=20, seed=3, users=40, warmup=60, duration_s=1.0)
    # Then the services accepted everything it sent (the catalog may already hold the demo
    # products from an earlier run in this session)
    refused = {
        call: n
        for call, n in sim.answered.items()
        if call[2] >= 300 and call[:3] != ("POST", "/v1/products", 409)
    }
    assert not refused, refused
    assert sim.answered[("POST", "/v1/orders", 201)] >= 20
    # And every order it placed reached the serving store, where the storefront reads it
    keys = Keys("sp")

    async def all_counted() -> bool:
        return all(redis_client.exists(keys.order(order_id)) for order_id in sim.placed)

    await wait_for_async(all_counted, 10, "the simulated orders to be counted")

    # And the users' first names (social service → events → processor) are in it too
    async def all_named() -> bool:
        return all(redis_client.hexists(keys.name(f"u{i}"), "n") for i in range(40))

    await wait_for_async(all_named, 10, "the simulated users' first names")
    async with httpx.AsyncClient(base_url=stack.url("notifier")) as notifier:
        top = (await notifier.get("/v1/proof/products/p0")).json()
    assert top["bought"]["24h"] >= 1
