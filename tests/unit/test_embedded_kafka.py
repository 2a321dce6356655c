"""The embedded Apache Kafka's set-up, without starting it: cluster ids, the pinned release, and
the one clear line a machine without Java or Maven gets."""

from __future__ import annotations

import pytest

from tools import embeddedkafka
from tools.devstack import StackError


def test_cluster_ids_read_as_values_not_options() -> None:
    # Kafka's own Uuid.randomUuid never starts an id with "-": StorageTool would take it for an
    # option (one id in 64 would, by its first base64 character)
    ids = {embeddedkafka.new_cluster_id() for _ in range(3000)}
    assert len(ids) == 3000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_the_pinned_release_comes_from_the_pom() -> None:
    assert embeddedkafka.kafka_version().split(".")[0] == "4"


def test_a_machine_without_java_is_told_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddedkafka.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match="openjdk-17-jre-headless maven"):
        embeddedkafka.java_binary()


def test_a_machine_without_maven_is_told_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("SOCIALPROOF_KAFKA_CACHE", str(tmp_path))
    monkeypatch.delenv("SOCIALPROOF_KAFKA_LIBS", raising=False)
    monkeypatch.setattr(embeddedkafka.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match="KAFKA_BOOTSTRAP_SERVERS"):
        embeddedkafka.ensure_jars(echo=False)
    assert not any(tmp_path.rglob("*.jar"))
