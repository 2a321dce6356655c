"""The KafkaTopic resources are generated from the contracts topic registry and stay in step."""

from __future__ import annotations

import dataclasses

from contracts import topics as registry
from tools.deploycheck import topics
from tools.deploycheck.cli import deploy_app
from tools.deploycheck.manifests import DEPLOY_DIR


def test_checked_in_topics_match_the_registry() -> None:
    path = DEPLOY_DIR / topics.TOPICS_FILE
    assert path.read_text() == topics.render_topics(), "run `socialproof deploy topics`"


def test_every_registry_topic_has_a_kafka_topic_with_its_partitions_and_config() -> None:
    resources = {r["spec"]["topicName"]: r for r in topics.topic_resources()}
    assert set(resources) == {t.name for t in registry.ALL_TOPICS}
    for topic in registry.ALL_TOPICS:
        spec = resources[topic.name]["spec"]
        assert spec["partitions"] == topic.partitions
        assert spec["replicas"] == 3
        for key, value in topic.config.items():
            assert spec["config"][key] == value
        assert (
            resources[topic.name]["metadata"]["labels"]["strimzi.io/cluster"]
            == topics.KAFKA_CLUSTER
        )


def test_a_registry_change_makes_the_checked_in_file_stale(monkeypatch) -> None:
    changed = dataclasses.replace(registry.ORDERS, partitions=12)
    monkeypatch.setattr(
        topics,
        "ALL_TOPICS",
        tuple(changed if t is registry.ORDERS else t for t in registry.ALL_TOPICS),
    )
    assert topics.stale_topics()


def test_topics_command_writes_and_checks(tmp_path) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    (tmp_path / topics.TOPICS_FILE).parent.mkdir(parents=True)
    stale = runner.invoke(deploy_app, ["topics", "--check", "--deploy-dir", str(tmp_path)])
    assert stale.exit_code == 1
    wrote = runner.invoke(deploy_app, ["topics", "--deploy-dir", str(tmp_path)])
    assert wrote.exit_code == 0, wrote.output
    fresh = runner.invoke(deploy_app, ["topics", "--check", "--deploy-dir", str(tmp_path)])
    assert fresh.exit_code == 0, fresh.output
