"""Unit tests of the proof reader's review and question figures (services.notifier.proof), read
from samples of the Redis hashes the stream processor writes (contracts.views and issue #19's
layout): verified-purchase reviews, the verified-only setting, question counts, and zeros for
what an older processor never wrote; and how notes read from several shards are merged."""

from __future__ import annotations

from typing import Any

from contracts.views import DAY_MS, NOTES_KEEP, QUESTION_NOTES_PER_DAY, Keys
from services.notifier.proof import (
    ProofReader,
    merge_notes,
    question_counts,
    review_summary,
    to_json,
)

NOW_MS = 1_800_000_000_000

# 5 reviews (4+5+5+3+5 = 22), 3 of them by verified buyers (5+5+3 = 13)
REVIEWS = {
    "count": "5", "sum": "22", "h1": "0", "h2": "0", "h3": "1", "h4": "1", "h5": "3",
    "vcount": "3", "vsum": "13", "vh1": "0", "vh2": "0", "vh3": "1", "vh4": "0", "vh5": "2",
}  # fmt: skip
QA = {"questions": "7", "answered": "4", "answered_by_buyers": "2"}
NO_STARS = {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}


class FakePipeline:
    """What the reader's pipeline asks of Redis, answered from a dict of hashes."""

    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self.hashes, self.replies = hashes, []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def zcount(self, key: str, low: Any, high: Any) -> None:
        self.replies.append(0)

    def hgetall(self, key: str) -> None:
        self.replies.append(dict(self.hashes.get(key, {})))

    async def execute(self) -> list:
        return self.replies


class FakeRedis:
    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self.hashes = hashes

    def register_script(self, script: str) -> None:
        return None

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self.hashes)


def reader(hashes: dict[str, dict[str, str]], verified_only: bool = False) -> ProofReader:
    return ProofReader(FakeRedis(hashes), "sp", reviews_verified_only=verified_only)  # type: ignore[arg-type]


def sample() -> dict[str, dict[str, str]]:
    keys = Keys("sp")
    return {keys.reviews("p1"): REVIEWS, "sp:qa:p1": QA, keys.reviews("p2"): {"count": "1"}}


async def test_the_proof_gives_all_reviews_their_verified_subset_and_the_questions() -> None:
    (p1,) = await reader(sample()).read_many(["p1"], now_ms=NOW_MS)
    body = to_json(p1)
    assert body["reviews"] == {
        "count": 5,
        "average": 4.4,
        "histogram": {"1": 0, "2": 0, "3": 1, "4": 1, "5": 3},
        "verified_count": 3,
        "verified_average": 4.33,  # 13 / 3, two decimals
        "verified_histogram": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 2},
    }
    assert body["questions"] == {"count": 7, "answered": 4, "answered_by_buyers": 2}


async def test_verified_only_makes_the_summary_the_verified_figures() -> None:
    (p1,) = await reader(sample(), verified_only=True).read_many(["p1"], now_ms=NOW_MS)
    reviews = to_json(p1)["reviews"]
    assert (reviews["count"], reviews["average"]) == (3, 4.33)
    assert reviews["histogram"] == reviews["verified_histogram"] == {
        "1": 0, "2": 0, "3": 1, "4": 0, "5": 2,
    }  # fmt: skip
    assert reviews["verified_count"] == 3 and reviews["verified_average"] == 4.33


async def test_keys_an_older_processor_never_wrote_read_as_zeros() -> None:
    # p2: a review hash without the verified fields and no qa hash; p3: nothing at all
    p2, p3 = await reader(sample()).read_many(["p2", "p3"], now_ms=NOW_MS)
    assert to_json(p2)["reviews"]["count"] == 1
    for proof in (p2, p3):
        body = to_json(proof)
        assert body["reviews"]["verified_count"] == 0
        assert body["reviews"]["verified_average"] is None
        assert body["reviews"]["verified_histogram"] == NO_STARS
        assert body["questions"] == {"count": 0, "answered": 0, "answered_by_buyers": 0}
    (p2_verified_only,) = await reader(sample(), verified_only=True).read_many(["p2"], NOW_MS)
    assert to_json(p2_verified_only)["reviews"]["count"] == 0  # no verified figures: none shown


def test_summaries_from_hashes() -> None:
    assert review_summary({}).model_dump() == {
        "count": 0,
        "average": None,
        "histogram": NO_STARS,
        "verified_count": 0,
        "verified_average": None,
        "verified_histogram": NO_STARS,
    }
    # rounding is half up, as for the whole summary: 9 / 2 = 4.5, 14 / 3 = 4.666… -> 4.67
    assert review_summary({"vcount": "2", "vsum": "9"}).verified_average == 4.5
    assert review_summary({"vcount": "3", "vsum": "14"}, verified_only=True).average == 4.67
    assert question_counts({"questions": "1"}).model_dump() == {
        "count": 1,
        "answered": 0,
        "answered_by_buyers": 0,
    }


def test_notes_merged_from_shards_are_capped_per_utc_day_then_kept_newest() -> None:
    # Given a viewer's notes in three shards, each already capped on its own: day 0 has 4 + 3
    # (more than QUESTION_NOTES_PER_DAY together), day 1 has one more at the same ms as another
    # shard's (ties by question id), and one note is in two shards' replies (a duplicate)
    day = DAY_MS
    shard_a = [(10, "qa1", "p1"), (20, "qa2", "p1"), (30, "qa3", "p1"), (40, "qa4", "p1")]
    shard_b = [(15, "qb1", "p2"), (25, "qb2", "p2"), (35, "qb3", "p2"), (day + 5, "qb4", "p2")]
    shard_c = [(day + 5, "qc1", "p3"), (day + 5, "qb4", "p2")]
    merged = merge_notes(shard_a + shard_b + shard_c)
    # Then the first 5 of day 0 by (ms, id), both of day 1, once each, newest first
    assert QUESTION_NOTES_PER_DAY == 5
    assert [q for _, q, _ in merged] == ["qc1", "qb4", "qa3", "qb2", "qa2", "qb1", "qa1"]
    # And of more than NOTES_KEEP notes (one a day) only the newest NOTES_KEEP stay
    many = [(i * day, f"q{i:03}", "p") for i in range(NOTES_KEEP + 7)]
    kept = merge_notes(many)
    assert [q for _, q, _ in kept] == [f"q{i:03}" for i in reversed(range(7, NOTES_KEEP + 7))]
