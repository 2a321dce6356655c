# socialproof: the two commands of the quickstart are `make run` and `make test`.
# Everything they need is installed here: a virtualenv with the project, and Debian packages.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# the Quix Streams peer's own virtualenv (bench/peer/requirements.txt), built before bench and test
PEER_VENV  := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed-stamp
# Apache Kafka runs from Maven Central's jars on Java 17 (tools/kafka_jars/pom.xml).
KAFKA_SYSTEM_PACKAGES := java=openjdk-17-jre-headless mvn=maven
SYSTEM_PACKAGES      := redis-server $(KAFKA_SYSTEM_PACKAGES)
# kcat: the engineers' Kafka tool, tested against the embedded broker;
# wrk: the read API benchmark's load generator (the test suite smoke-runs every bench scenario)
TEST_SYSTEM_PACKAGES := $(SYSTEM_PACKAGES) kcat chromium wrk
BENCH_SYSTEM_PACKAGES := $(SYSTEM_PACKAGES) wrk

.PHONY: help setup kafka-jars run run-cluster test deploy-check test-fast bench schemas check-schemas lint clean peer-venv

help:
	@echo "make run    - start the whole stack (embedded Apache Kafka, Redis, every service)"
	@echo "make run-cluster - the same on a local Redis Cluster (3 masters + 3 replicas)"
	@echo "make test   - set up what is missing, then run the whole test suite"
	@echo "make setup  - only create .venv, install system packages and fetch Apache Kafka's jars"
	@echo "make deploy-check - build, validate and policy-check the Kubernetes manifests (deploy/)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)
	@scripts/ensure-system-packages.sh $(SYSTEM_PACKAGES)
	@$(PY) -m tools.embeddedkafka

# Apache Kafka's jars, fetched once with Maven into ~/.cache/socialproof/kafka (offline after).
kafka-jars: $(STAMP)
	@scripts/ensure-system-packages.sh $(KAFKA_SYSTEM_PACKAGES)
	@$(PY) -m tools.embeddedkafka

run: setup
	$(VENV)/bin/socialproof run

# REDIS_URL naming a node of an existing Redis Cluster works with `make run` as it is
run-cluster: setup
	$(VENV)/bin/socialproof run --redis-cluster

test: $(STAMP) $(PEER_STAMP) deploy-check
	@scripts/ensure-system-packages.sh $(TEST_SYSTEM_PACKAGES)
	@$(PY) -m tools.embeddedkafka
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Performance of the stream processor and the serving store (results in bench/results/);
# BENCH_ARGS="--only throughput" runs one scenario, "--list" lists them; plots need the bench extra.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) $(PEER_STAMP)
	@scripts/ensure-system-packages.sh $(BENCH_SYSTEM_PACKAGES)
	@$(PY) -m tools.embeddedkafka
	$(PY) -m bench $(BENCH_ARGS)

# The Quix Streams peer (bench/peer/): a virtualenv of its own, since quixstreams 3.28.1 needs
# confluent-kafka < 2.13 and the project pins 2.16. Building it measured 24-51 s with an empty
# pip cache, 15-25 s with a warm one (load 1-6.7 on 2 cores); a no-op once its stamp is newer.
$(PEER_STAMP): bench/peer/requirements.txt
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/peer/requirements.txt
	@touch $(PEER_STAMP)

peer-venv: $(PEER_STAMP)

# Unit tests only: no broker, no Redis.
test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

schemas: $(STAMP)
	$(VENV)/bin/socialproof contracts generate

check-schemas: $(STAMP)
	$(VENV)/bin/socialproof contracts check

clean:
	rm -rf $(VENV) $(PEER_VENV) .devstack .pytest_cache test-artifacts

# Kubernetes manifests: kustomize builds of every overlay, offline schema validation (pinned
# Kubernetes version; Strimzi's CRD schemas generated once from Maven Central's jars with Java,
# then cached), checkov, our rules, KafkaTopics vs the registry, alert rules (promtool, from
# Debian's prometheus package). Fails on any problem; `make test` runs it first.
deploy-check: $(STAMP)
	@scripts/ensure-system-packages.sh prometheus $(KAFKA_SYSTEM_PACKAGES)
	@$(PY) -m tools.deploycheck.crds
	$(VENV)/bin/socialproof deploy check
