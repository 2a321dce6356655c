"""``make bench``: measured performance of the stream processor and the serving store.

Run ``python -m bench`` (all scenarios) or ``python -m bench --only throughput --quick``.
Scenarios live in :mod:`bench.scenarios` and register themselves with ``@scenario``; results go
to ``bench/results/<timestamp>.json``, ``bench/results/latest.json`` and ``bench/results/report.md``.

Backend: by default every scenario run gets a fresh embedded Apache Kafka
(one KRaft process) and redis-server.
With ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` both set, the scenarios run against those
existing servers instead, on topics, Redis namespaces and consumer groups of their own that are
deleted afterwards (:mod:`bench.env`); nothing else on the servers is read or written. The report
names the backend.
"""
