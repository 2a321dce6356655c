"""``socialproof simulate`` against the real stack: the services accept what it sends and the
storefront's counters move, and the badge experiment's visitors reach its results."""

from __future__ import annotations

import httpx

from contracts.views import Keys
from tests.support.waiting import wait_for_async
from tools.devstack import Stack
from tools.simulate import Targets, simulate_async
from tools.simulate_experiments import DEMO_PREFIX, DemoExperiment


async def test_the_simulator_drives_real_traffic_into_the_storefront(
    stack: Stack, service_token: str, redis_client
) -> None:
    # Given the running services
    targets = Targets(
        catalog=stack.url("catalog"),
        orders=stack.url("orders"),
        social=stack.url("social"),
        token=service_token,
        notifier=stack.url("notifier"),
    )
    # When the simulator sets up a small world, warms up and runs for a second, with visitors of
    # the demo's badge experiment
    demo = DemoExperiment(rate=20)
    sim = await simulate_async(
        targets, rate=20, seed=3, users=40, warmup=60, duration_s=1.0, experiment=demo
    )
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

    # And the demo's badge experiment (the one active, its title stating the truth) counts
    # visitors; stopped after, as it covers demo products other tests may show
    auth = {"Authorization": f"Bearer {service_token}"}
    async with httpx.AsyncClient(base_url=stack.url("notifier"), headers=auth) as shop:
        listed = (await shop.get("/v1/experiments", params={"status": "active"})).json()
        (experiment,) = [e for e in listed["items"] if e["id"].startswith(DEMO_PREFIX)]
        try:
            assert experiment["id"].startswith(demo.design().experiment_id)
            assert experiment["title"].startswith("Simulated truth: control buys 20.0 %; friends")

            async def seen() -> bool:
                results = (await shop.get(f"/v1/experiments/{experiment['id']}/results")).json()
                return sum(v["visitors"] for v in results["variants"]) > 0

            await wait_for_async(seen, 10, "the demo experiment's visitors")
        finally:
            await shop.post(f"/v1/experiments/{experiment['id']}/stop")
