"""The KafkaTopic resources, generated from the topic registry (``contracts/topics.py``).

``components/kafka/topics.yaml`` is written by ``socialproof deploy topics`` and checked in, so a
reviewer sees every partition and retention change in the diff; deploy-check's ``topics`` rule
fails when the file and the registry disagree. No scanner knows our registry.
"""

from __future__ import annotations

import re
from pathlib import Path

from contracts.topics import ALL_TOPICS
from tools.deploycheck.manifests import DEPLOY_DIR, Obj, Problem

#: the Strimzi Kafka cluster the manifests create (KafkaTopic resources carry it as a label)
KAFKA_CLUSTER = "socialproof"
TOPICS_FILE = Path("k8s/components/kafka/topics.yaml")  # relative to the deploy directory


def topic_resources(cluster: str = KAFKA_CLUSTER, replicas: int = 3) -> list[Obj]:
    """One Strimzi KafkaTopic per registry topic (names made DNS-safe, the real one in topicName)."""
    resources = []
    for topic in ALL_TOPICS:
        resources.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                "metadata": {
                    "name": re.sub(r"[^a-z0-9-]", "-", topic.name.lower()),
                    "labels": {"strimzi.io/cluster": cluster},
                    "annotations": {"socialproof.io/writer": topic.writer},
                },
                "spec": {
                    "topicName": topic.name,
                    "partitions": topic.partitions,
                    "replicas": replicas,
                    # min.insync.replicas 2 of 3 with acks=all: one broker may be down
                    "config": {**topic.config, "min.insync.replicas": "2"},
                },
            }
        )
    return resources


def render_topics() -> str:
    import yaml

    header = (
        "# Generated from contracts/topics.py by `socialproof deploy topics`: do not edit.\n"
        "# `make deploy-check` fails when this file and the registry disagree.\n"
    )
    return header + yaml.safe_dump_all(topic_resources(), sort_keys=False)


def stale_topics(deploy_dir: Path = DEPLOY_DIR) -> bool:
    path = deploy_dir / TOPICS_FILE
    return not path.exists() or path.read_text() != render_topics()


def topics_problems(deploy_dir: Path = DEPLOY_DIR) -> list[Problem]:
    """The ``topics`` rule: the checked-in KafkaTopic file is what the registry generates."""
    if not stale_topics(deploy_dir):
        return []
    return [
        Problem(
            "socialproof",
            "topics",
            str(TOPICS_FILE),
            "differs from contracts/topics.py: run `socialproof deploy topics`",
        )
    ]
