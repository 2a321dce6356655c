"""``make bench``: measured performance of the stream processor and the serving store.

Run ``python -m bench`` (all scenarios) or ``python -m bench --only throughput --quick``.

One module per scenario (or per pair of variants: ``sse_fanout``/``sse_fanout_x5``,
``read_api``/``read_api_2p``), each registering itself with ``@scenario``
(:mod:`bench.registry`): :mod:`bench.throughput`, :mod:`bench.burst_lag`,
:mod:`bench.friends_bought`, :mod:`bench.sse_fanout`, :mod:`bench.read_api`, :mod:`bench.e2e`
(``e2e_latency``), :mod:`bench.broker_fetch`, :mod:`bench.faust_eos` (its Faust app:
:mod:`bench.faust_eos_app`) and :mod:`bench.scaling`. What they share: :mod:`bench.env` (the
servers, namespaces, workers and notifier a scenario runs against), :mod:`bench.measure`
(percentiles, CPU and memory from ``/proc``, SSE clients, the event mix), :mod:`bench.plots`;
:mod:`bench.baseline_worker` is the per-event worker ``throughput`` compares with. The runner,
:mod:`bench.__main__`, imports every scenario module in one list, the order of the report; no
scenario module imports another, nor the runner. Results (:mod:`bench.report`):
``bench/results/latest.json``, ``report.md`` and the PNG plots, kept in git; each run's own JSON
in ``bench/results/runs/``, which git ignores.

Backend: by default every scenario run gets a fresh embedded Apache Kafka
(one KRaft process) and redis-server.
With ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` both set, the scenarios run against those
existing servers instead, on topics, Redis namespaces and consumer groups of their own that are
deleted afterwards (:mod:`bench.env`); nothing else on the servers is read or written. The report
names the backend.
"""
