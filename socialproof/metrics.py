"""Prometheus metrics shared by every service (each process serves them at ``/metrics``).

Metric names start with ``socialproof_``; HTTP metrics are labelled by route template, never by
raw path, so ids in URLs do not explode the label space.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "socialproof_http_requests_total",
    "HTTP requests handled",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "socialproof_http_request_duration_seconds",
    "HTTP request handling time",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "socialproof_events_published_total",
    "Events the broker acknowledged",
    ["topic", "event_type"],
)
PUBLISH_FAILURES = Counter(
    "socialproof_publish_failures_total",
    "Events the broker did not acknowledge in time",
    ["topic", "reason"],
)
EVENTS_PROCESSED = Counter(
    "socialproof_events_processed_total",
    "Events the stream processor applied to the serving store",
    ["topic", "event_type"],
)
DEAD_LETTERS = Counter(
    "socialproof_dead_letters_total",
    "Records sent to the dead-letter topic",
    ["topic", "reason"],
)
BATCH_LATENCY = Histogram(
    "socialproof_processor_batch_seconds",
    "Time to apply one batch of events to Redis",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
PROCESSOR_LAG = Gauge(
    "socialproof_processor_lag_seconds",
    "How far behind its partitions the worker is, in seconds: the age (from the record's Kafka "
    "timestamp) of the newest record in the batch it committed last; 0 once a fetch finds "
    "nothing new",
)
LIVE_CONNECTIONS = Gauge(
    "socialproof_live_connections",
    "Live update connections (SSE and WebSocket) the notifier holds open",
    multiprocess_mode="livesum",  # several server processes: the sum of the living ones
)
#: where an event's time goes between its Kafka record and a live client, one histogram per
#: stage (``make bench``'s e2e_latency reads it for its breakdown). The stream worker observes
#: ``fetch_wait`` (the oldest record of a fetch: its Kafka timestamp → fetched), ``batch`` (fetched
#: → its apply started: waiting behind the batches in flight), ``redis`` (the batch's scripts) and
#: ``announce`` (the change channel's publish); the notifier ``hub_read`` (an announcement heard →
#: its states read and offered to the connections) and ``push`` (offered → handed to the
#: connection: pacing, coalescing and the wake-up of its sender). Buckets from 0.25 ms: a tail of
#: 100 ms must show in the stage it comes from.
PIPELINE_STAGE = Histogram(
    "socialproof_pipeline_stage_seconds",
    "Time spent in one stage between an event's Kafka record and a live client (see the stage "
    "label)",
    ["stage"],
    buckets=(0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1)
    + (0.15, 0.25, 0.5, 1, 2.5),
)
