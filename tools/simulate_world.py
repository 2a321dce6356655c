"""The simulator's demo world: the demo shop's products, the users' settings for the demo, and
the demo storefront's catalog (its products and its viewers, the best-connected users). Imported
through :mod:`tools.simulate`; the notifier never imports it (it serves
``services/notifier/static/demo-catalog.json``, this catalog for the default seed)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tools.loadgen import DEFAULT_MIX, LoadConfig, LoadGenerator

#: the demo shop's products: the loadgen's ``p0`` … (``p0`` is the most popular, Zipf)
DEMO_PRODUCTS: list[dict[str, str]] = [
    {"id": "p0", "name": "Espresso machine", "category": "kitchen", "price": "249.00"},
    {"id": "p1", "name": "Noise-cancelling headphones", "category": "audio", "price": "179.00"},
    {"id": "p2", "name": "Trail running sneakers", "category": "sports", "price": "119.00"},
    {"id": "p3", "name": "Waterproof backpack", "category": "outdoor", "price": "89.00"},
    {"id": "p4", "name": "Smart watch", "category": "electronics", "price": "229.00"},
    {"id": "p5", "name": "Bestselling novel", "category": "books", "price": "18.90"},
    {"id": "p6", "name": "Monstera plant", "category": "home", "price": "34.00"},
    {"id": "p7", "name": "Reading lamp", "category": "home", "price": "59.00"},
    {"id": "p8", "name": "Acoustic guitar", "category": "music", "price": "299.00"},
    {"id": "p9", "name": "Instant camera", "category": "electronics", "price": "99.00"},
    {"id": "p10", "name": "Cast-iron teapot", "category": "kitchen", "price": "45.00"},
    {"id": "p11", "name": "Yoga mat", "category": "sports", "price": "29.00"},
]  # fmt: skip
DEFAULT_USERS = 120
#: how many demo users the storefront's viewer switcher offers (the best connected)
DEMO_VIEWERS = 4


def demo_config(seed: int = 42, users: int = DEFAULT_USERS) -> LoadConfig:
    """The demo world: a small shop where most users opt in (as the demo data should)."""
    return LoadConfig(
        seed=seed,
        users=users,
        products=len(DEMO_PRODUCTS),
        mean_friends=12,
        consent_share_rate=0.85,
        consent_feed_rate=0.85,
        consent_questions_rate=0.6,
        # the default activity plus questions and answers, so the demo's Q&A is alive too
        # (about 4 posts per user an hour at 5 events/s: under SOCIALPROOF_QA_POSTS_PER_HOUR)
        mix={**DEFAULT_MIX, "question": 0.01, "answer": 0.02},
        producer="simulate",
    )


def demo_catalog(seed: int = 42, users: int = DEFAULT_USERS) -> dict[str, Any]:
    """What the demo storefront shows: the products, and the best-connected users as viewers."""
    gen = LoadGenerator(demo_config(seed, users))
    degree: Counter[str] = Counter()
    for a, b in gen.friendship_pairs():
        degree[a] += 1
        degree[b] += 1
    viewers = sorted(degree, key=lambda u: (-degree[u], u))[:DEMO_VIEWERS]
    return {
        "currency": "EUR",
        "products": [dict(p) for p in DEMO_PRODUCTS],
        "viewers": [{"id": u, "name": gen.first_names[u], "friends": degree[u]} for u in viewers],
    }


def write_demo_catalog(path: Path, seed: int = 42, users: int = DEFAULT_USERS) -> None:
    """The demo catalog as the notifier reads it (``SOCIALPROOF_DEMO_CATALOG_PATH``); the bundled
    ``services/notifier/static/demo-catalog.json`` is this for the default seed."""
    path.write_text(json.dumps(demo_catalog(seed, users), indent=2) + "\n", encoding="utf-8")
