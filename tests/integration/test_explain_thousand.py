"""#19's "done when" for explanations at size: one product with 1,000 mixed events (purchases,
refunds, cancellations, reviews posted, edited and deleted, shares, consent changes, questions,
answers, erasures, duplicates, any order), written by the real counter store: for every figure
the notifier serves, the explanation's events, over all pages, are as many as the served
number; on every layout of the store (one shard, four, a Redis Cluster's twelve: the product's
facts in its shard, the friends replicated into it)."""

from __future__ import annotations

import asyncio
import json
import random

from typer.testing import CliRunner

from cli.main import app as cli_app
from services.counters.store import CounterStore
from services.notifier.explain import Explainer, UserRefs
from services.notifier.proof import ProofReader, to_json
from tests.integration.test_explain import (
    KEY,
    MIX,
    NOW,
    NOW_MS,
    PUBLIC_FIGURES,
    every_page,
    served,
)
from tests.support.stores import StoreUnderTest
from tools.loadgen import LoadConfig, LoadGenerator


async def test_every_figure_of_a_product_with_1000_events_is_explained_exactly(
    store: StoreUnderTest,  # noqa: F811
) -> None:
    # Given one product and 1,000 mixed events about it, with duplicates, shuffled
    gen = LoadGenerator(LoadConfig(
        seed=1000, users=150, products=1, mean_friends=8, span_hours=24 * 9, anchor=NOW,
        consent_questions_rate=0.5, mix=MIX,
    ))
    activity = list(gen.activity_events(1000))
    events = list(gen.setup_events()) + activity + gen.erase_events(3)
    rng = random.Random(1000)
    shuffled = events + rng.sample(events, 100)
    rng.shuffle(shuffled)
    await CounterStore(store.redis, store.namespace).apply(shuffled)
    reader = ProofReader(store.redis, store.namespace, shards=store.layout.shards)
    explainer = Explainer(reader, UserRefs(KEY))
    (product,) = gen.product_ids
    proof = to_json(await reader.read(product, now_ms=NOW_MS))
    # When every figure is explained, page by page
    for path in PUBLIC_FIGURES:
        value, counted, _ = await every_page(explainer, product, path, limit=100)
        # Then its events are exactly as many as the number served
        assert value == len(counted) == served(proof, path), path
    for viewer in rng.sample(gen.user_ids, 20):
        count, _ = await reader.friends_bought(viewer, product)
        value, counted, _ = await every_page(
            explainer, product, "friends_bought", viewer=viewer, limit=100
        )
        assert value == len(counted) == count, viewer
    # And `socialproof explain` finds the namespace's shards and reads the same (at its own
    # clock: a figure without a window)
    env = {
        "SOCIALPROOF_REDIS_URL": store.url,
        "SOCIALPROOF_REDIS_NAMESPACE": store.namespace,
        "SOCIALPROOF_SERVICE_TOKEN": "explain-thousand-token",
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, cli_app, ["explain", product, "reviews.count", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    assert cli["value"] == len(cli["events"]) == proof["reviews"]["count"]
    # and the figures are not trivially small
    assert proof["bought"]["7d"] > 50 and proof["reviews"]["count"] > 20
    assert proof["questions"]["count"] > 20 and proof["shares"]["total"] > 50
