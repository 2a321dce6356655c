"""Experiment assignment and the notifier's experiment registry, without a broker.

Assignment is the design's formula (sha256 of ``{experiment}|{visitor}``, first 8 bytes, mod
10,000; consecutive ranges of ``split[i] * 100`` buckets), so it is recomputed here by hand; the
split is checked on 10,000 visitors against binomial bounds; the registry applies the topic's
records by the contract's rules (first definition wins, earliest stop counts); the beacon
event ids are deterministic; the create body's cross-field checks name the field."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from scipy import stats

from contracts import codec
from contracts.events import ExperimentFields, ExperimentStarted, ExperimentStopped
from services.notifier.api.beacons import event_id
from services.notifier.experiment_schemas import ExperimentCreate
from services.notifier.experiments import ExperimentRegistry, assign, bucket
from socialproof.settings import Settings
from socialproof.topicview import Record

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
N = 10_000


def fields(
    experiment_id: str = "exp-1", split: tuple[int, ...] = (50, 30, 20), **extra
) -> ExperimentFields:
    names = ["control", "friends", "counts", "four", "five", "six"][: len(split)]
    variants = [{"name": n, "badge": "none" if n == "control" else "show"} for n in names]
    return ExperimentFields(
        **{
            "experiment_id": experiment_id,
            "products": ["p1", "p2"],
            "variants": variants,
            "split": list(split),
            "starts_at": NOW - timedelta(hours=1),
            **extra,
        }
    )


def by_hand(experiment_id: str, visitor_id: str, split: list[int]) -> int:
    """The variant index of the design doc's formula, written out independently."""
    digest = hashlib.sha256(f"{experiment_id}|{visitor_id}".encode()).digest()
    b = int.from_bytes(digest[:8], "big") % 10000
    edges = [sum(split[: i + 1]) * 100 for i in range(len(split))]
    return next(i for i, edge in enumerate(edges) if b < edge)


def visitors(n: int = N, tag: str = "v") -> list[str]:
    return [f"{tag}-{i:08d}" for i in range(n)]


def test_assignment_is_the_design_formula_and_deterministic() -> None:
    exp = fields()
    for v in visitors(2000):
        expected = exp.variants[by_hand("exp-1", v, exp.split)]
        assert assign(exp, v) == expected
        assert assign(exp, v) == assign(fields(), v)  # a fresh definition object: the same
    assert 0 <= bucket("exp-1", "v-00000001") < 10000
    # a bucket right at a range's edge goes to the next variant (ranges are [lo, hi))
    two = fields(split=(50, 50))
    found = {b: v for v in visitors(20_000) if (b := bucket("exp-1", v)) in (4999, 5000)}
    assert assign(two, found[4999]).name == "control"
    assert assign(two, found[5000]).name == "friends"


@pytest.mark.parametrize("split", [(50, 50), (50, 30, 20), (10, 90), (25, 25, 25, 25)])
def test_the_split_holds_on_ten_thousand_visitors_within_binomial_bounds(
    split: tuple[int, ...],
) -> None:
    exp = fields(experiment_id=f"split-{'-'.join(map(str, split))}", split=split)
    counts = {v.name: 0 for v in exp.variants}
    for v in visitors():
        counts[assign(exp, v).name] += 1
    # each count is Binomial(N, p) if hashing is uniform; the two-sided 1e-6 interval (per
    # variant) fails a fair hash about once in a million runs, and a 1-point bias (p +- 0.01 on
    # 10,000 visitors, ~2-3.5 sd) well inside it only by chance
    for variant, percent in zip(exp.variants, split, strict=True):
        lo, hi = stats.binom.interval(1 - 1e-6, N, percent / 100)
        assert lo <= counts[variant.name] <= hi, (variant.name, counts, (lo, hi))
    # and the whole split passes the chi-square goodness of fit the SRM check uses
    expected = [N * p / 100 for p in split]
    assert stats.chisquare(list(counts.values()), expected).pvalue > 0.001


def test_experiments_assign_independently_of_each_other() -> None:
    # a visitor's variant in one experiment says nothing about their variant in another
    a, b = fields("exp-a", (50, 50)), fields("exp-b", (50, 50))
    table = [[0, 0], [0, 0]]
    for v in visitors():
        table[assign(a, v).name == "friends"][assign(b, v).name == "friends"] += 1
    assert stats.chi2_contingency(table).pvalue > 0.001


def record(offset: int, event) -> Record:
    return Record("storefront.experiments", 0, offset, None, codec.encode(event))


def test_the_registry_keeps_the_first_definition_and_the_earliest_stop() -> None:
    registry = ExperimentRegistry(Settings(kafka_bootstrap_servers="127.0.0.1:1"))
    first = ExperimentStarted.create(fields("e1"), producer="notifier", occurred_at=NOW)
    later = ExperimentStarted.create(
        fields("e1", split=(10, 90)), producer="notifier", occurred_at=NOW + timedelta(minutes=1)
    )
    stop_late = ExperimentStopped.create(
        {"experiment_id": "e1"}, producer="notifier", occurred_at=NOW + timedelta(hours=2)
    )
    stop_early = ExperimentStopped.create(
        {"experiment_id": "e1"}, producer="notifier", occurred_at=NOW + timedelta(hours=1)
    )
    for i, event in enumerate([first, later]):
        registry.apply(record(i, event))
    state = registry.get("e1")
    assert state is not None and state.fields.split == [50, 30, 20]
    assert state.started_at == NOW and state.started_event_id == first.event_id
    assert state.active and state.status(NOW) == "active"
    registry.apply(record(2, stop_late))
    registry.apply(record(3, stop_early))
    state = registry.get("e1")
    assert state is not None and state.stopped_at == NOW + timedelta(hours=1)
    assert not state.active and state.status(NOW) == "stopped"
    # a stop that comes before its definition still stops it
    registry.apply(record(4, ExperimentStopped.create({"experiment_id": "e2"}, producer="n")))
    registry.apply(record(5, ExperimentStarted.create(fields("e2"), producer="n")))
    assert registry.get("e2").status() == "stopped"  # type: ignore[union-attr]
    assert [s.experiment_id for s in registry.all()] == ["e1", "e2"]
    assert registry.get("nope") is None


def test_active_for_picks_the_earliest_started_experiment_covering_the_product() -> None:
    registry = ExperimentRegistry(Settings(kafka_bootstrap_servers="127.0.0.1:1"))
    early = NOW - timedelta(days=2)
    definitions = [
        fields("by-cat", products=None, category="kitchen", starts_at=early),
        fields("by-product", products=["p1"], starts_at=early + timedelta(hours=1)),
        fields("later", products=["p9"], starts_at=datetime.now(UTC) + timedelta(days=1)),
    ]
    for i, f in enumerate(definitions):
        registry.apply(record(i, ExperimentStarted.create(f, producer="notifier")))
    # p1 is in both; the category one started first
    assert registry.active_for("p1", "kitchen").experiment_id == "by-cat"  # type: ignore[union-attr]
    assert registry.active_for("p1", None).experiment_id == "by-product"  # type: ignore[union-attr]
    assert registry.active_for("p2", "garden") is None
    # a scheduled experiment assigns nobody yet
    assert registry.get("later").status() == "scheduled"  # type: ignore[union-attr]
    assert registry.active_for("p9", None) is None
    assert registry.needs_category("p2") and not registry.needs_category("p1")
    # once the category experiment stops, p1 falls to the product one
    registry.apply(record(9, ExperimentStopped.create({"experiment_id": "by-cat"}, producer="n")))
    assert registry.active_for("p1", "kitchen").experiment_id == "by-product"  # type: ignore[union-attr]


def test_beacon_event_ids_are_deterministic_to_the_millisecond() -> None:
    at = datetime(2026, 12, 1, 10, 0, 0, 123_456, tzinfo=UTC)
    same = event_id("v-12345678", "impression", "p1", "e1", at.replace(microsecond=123_999))
    assert event_id("v-12345678", "impression", "p1", "e1", at) == same
    assert event_id("v-12345678", "impression", "p1", None, at) != same
    assert event_id("v-12345678", "click", "p1", "e1", at) != same
    assert event_id("v-12345678", "impression", "p1", "e1", at + timedelta(milliseconds=1)) != same
    name = f"v-12345678|impression|p1|e1|{int(at.timestamp() * 1000)}"
    assert same == uuid.uuid5(uuid.UUID("8d3c6a52-41f7-5e0b-a9c4-2f6e1b7d9a03"), name)


def create(**body) -> ExperimentCreate:
    base = {
        "id": "e",
        "products": ["p1"],
        "variants": [{"name": "control", "badge": "none"}, {"name": "friends"}],
        "split": [50, 50],
    }
    return ExperimentCreate.model_validate({**base, **body})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"split": [50, 30, 20]}, "split"),
        ({"split": [60, 50]}, "split"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "variants[1].name"),
        ({"products": None}, "products"),
        ({"category": "kitchen"}, "category"),
        ({"products": ["p1", "p1"]}, "products"),
        (
            {"variants": [{"name": "c", "badge": "none", "elements": ["friends"]}, {"name": "f"}]},
            "variants[0].elements",
        ),
        (
            {"variants": [{"name": "c"}, {"name": "f", "elements": ["bought", "bought"]}]},
            "variants[1].elements",
        ),
    ],
)
def test_a_create_that_does_not_make_sense_names_the_field(body: dict, field: str) -> None:
    assert field in [p.field for p in create(**body).problems()]


def test_a_sensible_create_has_no_problems_and_starts_now_by_default() -> None:
    body = create()
    assert body.problems() == []
    made = body.fields("e", NOW)
    assert made.starts_at == NOW and made.attribution_window_h == 24
    assert [v.badge for v in made.variants] == ["none", "show"]
