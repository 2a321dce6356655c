"""The ``redis_cluster`` fixture: a real Redis Cluster (3 masters, 3 replicas) for the tests of
issue #16's cluster support.

Lazy and session-scoped: only a test that asks for it starts one (about 2.2 s on this machine,
see :mod:`tools.rediscluster`), and every such test of the session shares it. Its nodes' folders
and logs are under ``test-artifacts/redis-cluster/``, wiped when it starts. With
``SOCIALPROOF_TEST_REDIS_CLUSTER_URL=redis://host:port/0`` set, the tests use that existing
cluster instead; the tests that kill nodes skip then (faults go to clusters the suite owns only).

``tests/conftest.py`` imports it once for every module (a module importing it itself would get a
cluster of its own). :func:`drop_namespaces` deletes what a test wrote there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis as redis_sync

from contracts import namespaces
from tools.rediscluster import RedisCluster

EXTERNAL_CLUSTER_ENV = "SOCIALPROOF_TEST_REDIS_CLUSTER_URL"


@dataclass
class ClusterUnderTest:
    """The cluster the tests use: its URL, and the cluster itself when this suite started it
    (``local``: its nodes can be killed and restarted); ``None`` for an external one."""

    url: str
    local: RedisCluster | None

    def require_local(self) -> RedisCluster:
        """The suite's own cluster, or a skip saying why a test needs one."""
        if self.local is None:
            pytest.skip(
                f"kills cluster nodes: needs a cluster the suite starts itself, not the one "
                f"{EXTERNAL_CLUSTER_ENV} names (unset it to run this test)"
            )
        return self.local


@pytest.fixture
def redis_cluster(redis_cluster_session: ClusterUnderTest) -> ClusterUnderTest:
    """The session's Redis Cluster, whole: nodes an earlier test killed (and did not restart)
    are started again first, so every test begins with 3 masters and their replicas."""
    if redis_cluster_session.local is not None:
        redis_cluster_session.local.heal()
    return redis_cluster_session


@pytest.fixture(scope="session")
def redis_cluster_session() -> Iterator[ClusterUnderTest]:
    """A Redis Cluster for the session: the suite's own, or the one the environment names."""
    external = os.environ.get(EXTERNAL_CLUSTER_ENV, "").strip()
    if external:
        yield ClusterUnderTest(external, None)
        return
    from tests.conftest import ARTIFACTS

    workdir = ARTIFACTS / "redis-cluster"
    shutil.rmtree(workdir, ignore_errors=True)  # no nodes.conf or append-only file of a past run
    cluster = RedisCluster(workdir)
    with cluster:
        yield ClusterUnderTest(cluster.url, cluster)


def drop_namespaces(url: str, *names: str) -> None:
    """Delete namespaces (every key on every master) and their pointers from a cluster: one
    UNLINK per key, pipelined per node (a cluster refuses a multi-slot UNLINK)."""
    with redis_sync.RedisCluster.from_url(url, decode_responses=True) as client:
        pipe = client.pipeline(transaction=False)
        for namespace in names:
            for key in client.scan_iter(f"{namespace}:*", count=1000):
                pipe.unlink(key)
            pipe.unlink(namespaces.pointer_key(namespace))
        pipe.execute()
