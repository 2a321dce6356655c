"""Helpers for the deployment tests: find objects in a build, and name mutation cases."""

from __future__ import annotations

from collections.abc import Callable

from tools.deploycheck import manifests

Objs = list[dict]


def find(objects: Objs, kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objects: Objs, kind: str = "Deployment", name: str = "orders") -> dict:
    return manifests.pod_spec(find(objects, kind, name))["containers"][0]


def pod(objects: Objs, kind: str = "Deployment", name: str = "orders") -> dict:
    return manifests.pod_spec(find(objects, kind, name))


def redis_config(objects: Objs) -> dict:
    return next(
        o["data"]
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("redis-config")
    )


def replay_job(objects: Objs) -> dict:
    path = manifests.DEPLOY_DIR / "k8s/jobs/replay-rebuild.yaml"
    (job,) = manifests.in_namespace(
        manifests.load_documents(path.read_text()), manifests.namespace_of(objects)
    )
    return job


def cases(table: dict[str, list[Callable[[Objs], None]]]) -> list[tuple[str, Callable]]:
    return [(check_id, m) for check_id, ms in table.items() for m in ms]


def ids(found: list[tuple[str, Callable]]) -> list[str]:
    return [f"{check_id}-{m.__name__.strip('_')}" for check_id, m in found]
