"""``make bench``: measured performance of the stream processor and the serving store.

Run ``python -m bench`` (all scenarios) or ``python -m bench --only throughput --quick``.
Scenarios live in :mod:`bench.scenarios` and register themselves with ``@scenario``; results go
to ``bench/results/<timestamp>.json``, ``bench/results/latest.json`` and ``bench/results/report.md``.
"""
