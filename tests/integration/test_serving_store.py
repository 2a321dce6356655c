"""The services' client of the serving store (:class:`socialproof.http.ServingStore`): started
while nothing answers at ``REDIS_URL`` it answers with ConnectionError (the apps' 503) and keeps
asking; once a Redis answers there it is that Redis's client; a cluster node's URL gives the
cluster client (redis-py's ``RedisCluster``), with no other setting."""

from __future__ import annotations

import shutil

import pytest
import redis.exceptions
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from socialproof.http import ServingStore
from socialproof.processes import free_port
from socialproof.settings import Settings
from tests.conftest import ARTIFACTS
from tools.devstack import redis_server, wait_for_redis


async def test_an_outage_at_start_is_a_connection_error_until_redis_answers() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    store = ServingStore(Settings(redis_url=url))
    try:
        # Given nothing answers at REDIS_URL: readiness and commands raise ConnectionError
        with pytest.raises(redis.exceptions.ConnectionError):
            await store.ping()
        with pytest.raises(redis.exceptions.ConnectionError):
            await (await store.client()).get("k")
        assert store.cluster is None
        # When a Redis starts there: the same store asks again and uses it
        data = ARTIFACTS / f"serving-store-{port}"
        server = redis_server(port, data, echo=False).start()
        try:
            wait_for_redis(url)
            await store.ping()
            client = await store.client()
            assert store.cluster is False and await client.set("serving-store-k", "v")
            assert await client.get("serving-store-k") == "v"
        finally:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)
    finally:
        await store.aclose()


async def test_a_cluster_nodes_url_gives_the_cluster_client(redis_cluster) -> None:  # noqa: F811
    store = ServingStore(Settings(redis_url=redis_cluster.url))
    try:
        await store.ping()
        client = await store.client()
        assert store.cluster is True and isinstance(client, AsyncRedisCluster)
    finally:
        await store.aclose()
