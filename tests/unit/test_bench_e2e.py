"""The e2e_latency scenario's own arithmetic (no broker, no Redis): the stage histograms read
from a /metrics page, their quantiles between two scrapes, and one timed order's breakdown."""

from __future__ import annotations

import math

import httpx
import pytest

from bench.e2e import TimedOrder, _histogram_quantile, _stage_buckets, breakdown_table, summarize

PAGE = """# HELP socialproof_pipeline_stage_seconds ...
# TYPE socialproof_pipeline_stage_seconds histogram
socialproof_pipeline_stage_seconds_bucket{le="0.001",stage="redis"} 10.0
socialproof_pipeline_stage_seconds_bucket{le="0.01",stage="redis"} 90.0
socialproof_pipeline_stage_seconds_bucket{le="0.1",stage="redis"} 100.0
socialproof_pipeline_stage_seconds_bucket{le="+Inf",stage="redis"} 100.0
socialproof_pipeline_stage_seconds_count{stage="redis"} 100.0
socialproof_pipeline_stage_seconds_bucket{le="0.001",stage="push"} 1.0
socialproof_pipeline_stage_seconds_bucket{le="+Inf",stage="push"} 1.0
socialproof_processor_batch_seconds_bucket{le="0.001"} 5.0
"""


def test_stage_buckets_are_read_per_stage_from_a_metrics_page() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, text=PAGE)))
    buckets = _stage_buckets(client, "http://worker")
    assert buckets == {
        "redis": [(0.001, 10.0), (0.01, 90.0), (0.1, 100.0), (math.inf, 100.0)],
        "push": [(0.001, 1.0), (math.inf, 1.0)],
    }


def test_quantiles_count_only_what_was_observed_between_the_scrapes() -> None:
    before = [(0.001, 10.0), (0.01, 10.0), (0.1, 10.0), (math.inf, 10.0)]
    after = [(0.001, 10.0), (0.01, 90.0), (0.1, 100.0), (math.inf, 100.0)]
    # between the scrapes: 80 observations in (1, 10] ms and 10 in (10, 100] ms
    assert _histogram_quantile(before, after, 0.5) == pytest.approx(1 + 9 * 45 / 80)
    # rank 0.99 * 90 = 89.1: 9.1 of the 10 in (10, 100] ms
    assert _histogram_quantile(before, after, 0.99) == pytest.approx(10 + 90 * 9.1 / 10)
    assert math.isnan(_histogram_quantile(after, after, 0.5))  # nothing new
    # beyond the last finite bucket: its bound, a lower bound
    assert _histogram_quantile([], [(0.1, 0.0), (math.inf, 5.0)], 0.99) == pytest.approx(100)


def test_a_timed_orders_stages_add_up_from_its_clocks() -> None:
    order = TimedOrder("p", 1, sent=100.0, accepted=100.010, order_id="o-1", opened=99.0)
    assert order.stages_ms() is None  # not all clocks read yet
    order.record_ms, order.announced, order.client = 100_004, 100.020, 100.023
    stages = order.stages_ms()
    assert stages == pytest.approx(
        {
            "produce": 10,
            "to_record": 4,
            "record_to_201": 6,
            "worker": 16,
            "push": 3,
            "e2e": 13,
        }
    )
    assert stages["to_record"] + stages["record_to_201"] == pytest.approx(stages["produce"])
    assert stages["record_to_201"] + stages["e2e"] == pytest.approx(
        stages["worker"] + stages["push"]
    )


def test_the_breakdown_table_has_a_row_per_stage_and_a_column_per_rate() -> None:
    run = {
        "latencies_ms": [1.0, 2.0, 3.0],
        "timed_orders": 3,
        "broken_down": 3,
        "errors": 0,
        "events_per_s": 500.0,
        "drained_s": 0.1,
        "cpu": {"worker": 0.3},
        "slowest": ["e2e 3"],
        **{
            f"{stage}_{q}": 1.0
            for stage in ("produce", "to_record", "record_to_201", "worker", "push", "e2e")
            for q in ("p50", "p99")
        },
        **{
            f"worker_{stage}_{q}": 2.0
            for stage in ("fetch_wait", "batch", "redis", "announce")
            for q in ("p50", "p99")
        },
        **{
            f"notifier_{stage}_{q}": float("nan")
            for stage in ("hub_read", "push")
            for q in ("p50", "p99")
        },
    }
    figures = summarize({500: [run], 2000: [run, run]}, 10.0, 20)
    table = breakdown_table(figures).splitlines()
    assert table[2] == "| stage | 500 ev/s | 2,000 ev/s |"
    rows = [line for line in table[4:] if line.startswith("| ")]
    assert len(rows) == 12
    assert rows[4].endswith("| 2.0 / 2.0 | 2.0 / 2.0 |")  # fetch wait
    assert "nan / nan" in rows[9]  # hub read: nothing observed
