"""The Quix Streams peer (bench/peer/quix_app.py, run by :mod:`bench.quix_peer`) answers what the
oracle answers on the session's broker: a few thousand events with duplicates, in shuffled order,
with refunds, cancellations, review edits and deletions, over a span of event times that every
window (1 h, 24 h, 7 d) cuts. And the check it is judged by catches a wrong answer.

Its topics have 2 partitions, not the registry's 6: Quix opens its state stores one partition at a
time at start-up (about 0.5 s each on a loaded machine), and 2 keep a repartition topic in the
pipeline (with 1, Quix's ``group_by`` would skip it). Skipped only without ``.venv-peer``, which
``make test`` builds."""

from __future__ import annotations

import copy
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from bench.env import BenchEnv, clean_up, encode_all
from bench.quix_peer import MAKE_TARGET, PEER_VENV, compare, expected, run_peer
from contracts.topics import ORDERS, REVIEWS, SHARES, USERS
from socialproof.kafka import admin_client, topic_name
from socialproof.settings import Settings
from tools.loadgen import LoadConfig, LoadGenerator

pytestmark = pytest.mark.skipif(
    not (PEER_VENV / "bin" / "python").exists(),
    reason=f"{PEER_VENV.name} is missing: `make {MAKE_TARGET}` builds it (`make test` does)",
)

MIX = {"purchase": 0.4, "share": 0.25, "review": 0.12, "review_edit": 0.04,
       "review_delete": 0.03, "refund": 0.08, "cancel": 0.04, "consent": 0.04}


def test_the_peer_answers_what_the_oracle_answers(settings: Settings, tmp_path: Path) -> None:
    # Given 2,000 events over 8 days of event time before the anchor, a tenth of them sent
    # twice, shuffled, on topics of the test's own
    anchor = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    gen = LoadGenerator(LoadConfig(seed=31, users=300, products=30, mean_friends=5,
                                   span_hours=8 * 24, anchor=anchor, mix=MIX))
    events = list(gen.activity_events(2_000))
    rng = random.Random(31)
    events += rng.sample(events, 200)
    rng.shuffle(events)
    prefix = f"peer-{uuid.uuid4().hex[:8]}."
    mine = settings.model_copy(update={"kafka_topic_prefix": prefix})
    env = BenchEnv(mine, tmp_path, existing=True)
    names = [topic_name(mine, t) for t in (ORDERS, REVIEWS, SHARES, USERS)]
    admin = admin_client(mine)  # alive until its futures resolve
    for fut in admin.create_topics(
        [NewTopic(n, num_partitions=2, replication_factor=-1) for n in names]
    ).values():
        fut.result()
    namespaces: list[str] = []
    try:
        env.produce(encode_all(events))
        # When the peer works through them, its windows ending half an hour after the anchor
        now_ms = int((anchor + timedelta(minutes=30)).timestamp() * 1000)
        run = run_peer(env, names, len(events), now_ms=now_ms, commit_interval_s=1.0)
        namespaces.append(run.namespace)
    finally:
        env.http.close()
        assert not clean_up(mine, namespaces)
    # Then it read every event, once
    figures = run.figures
    assert figures["events"] == len(events) and figures["events_per_s"] > 0
    assert figures["cpu_us_per_event"] > 0 and figures["peak_rss_mb"] > 0
    # and its answers are the oracle's for every product, every window cutting something
    want = expected(events, now_ms)
    assert compare(run.answers, want) == {
        "products_checked": 30, "products_wrong": 0, "first_differences": []
    }
    for window in ("1h", "24h", "7d"):
        assert 0 < sum(p["bought"][window] for p in want.values())
    assert sum(p["bought"]["7d"] for p in want.values()) > sum(
        p["bought"]["24h"] for p in want.values()) > sum(p["bought"]["1h"] for p in want.values())
    # And a wrong answer is caught, product and figure named: one buyer fewer in a window
    wrong = copy.deepcopy(want)
    wrong["p3"]["bought"]["24h"] -= 1
    caught = compare(run.answers, wrong)
    assert caught["products_wrong"] == 1
    assert caught["first_differences"][0].startswith("p3 bought: peer {")
