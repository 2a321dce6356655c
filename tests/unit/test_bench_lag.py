"""The burst scenario's lag in seconds (bench.burst_lag.lag_seconds), on hand-made samples."""

from __future__ import annotations

import pytest

from bench.burst_lag import lag_seconds

# acknowledged counts sampled every 0.5 s: 100 events, then a burst of 1,000, then 100 more
TIMES = [0.0, 0.5, 1.0, 1.5, 2.0]
ACKED = [100, 100, 1100, 1100, 1200]


def test_everything_acknowledged_is_applied_means_no_lag() -> None:
    assert lag_seconds(TIMES, ACKED, 2.0, 1200) == 0.0
    assert lag_seconds(TIMES, ACKED, 2.0, 1500) == 0.0  # (a count above is never more lag)


@pytest.mark.parametrize(
    ("applied", "lag"),
    [
        # the burst (acknowledged between 0.5 and 1.0) not applied yet: behind since 0.5
        (100, 1.5),
        (600, 1.5),
        # the burst applied, the last 100 not: behind since 1.5
        (1100, 0.5),
        (1150, 0.5),
        # not even the first events: behind since the first sample
        (0, 2.0),
    ],
)
def test_lag_is_the_age_of_the_oldest_unapplied_acknowledgement(applied: int, lag: float) -> None:
    assert lag_seconds(TIMES, ACKED, 2.0, applied) == pytest.approx(lag)
