"""``POST /v1/beacons`` against a real notifier process, Kafka and Redis (issue #18).

The notifier of this module has topics of its own (a topic prefix), so what it published is read
back whole from ``storefront.interactions`` with a plain consumer and compared event by event:
deterministic ids, ``occurred_at = at``, windows stamped, ``viewer_id`` only with a viewer token.
Bad input is refused naming the field and publishes nothing; the rate limit, the privacy
signals (Sec-GPC, DNT) and the shop's switch publish nothing either. "Nothing" is proved with a
marker: the same visitor's next, accepted beacon goes to the same partition through the same
producer, so anything published before it would be read before it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
import redis as redis_sync
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from contracts import codec
from contracts.events import Event
from contracts.topics import EXPERIMENTS, INTERACTIONS
from contracts.views import Keys
from services.notifier.api.beacons import BEACON_EVENT_NAMESPACE
from socialproof.kafka import admin_client, ensure_topics, topic_name
from socialproof.settings import Settings
from tests.conftest import SERVICE_TOKEN
from tests.support.storefront import extra_notifier
from tools.devstack import Stack

MAX_EVENTS, BURST = 10, 4
ADMIN = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


@pytest.fixture(scope="module")
def private(settings: Settings) -> Iterator[tuple[Settings, str]]:
    """Settings with this module's topic prefix (topics created) and a Redis namespace."""
    tag = uuid.uuid4().hex[:8]
    mine = settings.model_copy(update={"kafka_topic_prefix": f"beacons-{tag}."})
    ensure_topics(mine, [INTERACTIONS, EXPERIMENTS])
    ns = f"tbeacon{tag}"
    yield mine, ns
    admin_client(mine).delete_topics([topic_name(mine, t) for t in (INTERACTIONS, EXPERIMENTS)])
    client = redis_sync.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = list(client.scan_iter(f"{ns}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def env(private: tuple[Settings, str], **extra: str) -> dict[str, str]:
    mine, ns = private
    return {
        "SOCIALPROOF_KAFKA_TOPIC_PREFIX": mine.kafka_topic_prefix,
        "SOCIALPROOF_REDIS_NAMESPACE": ns,
        "SOCIALPROOF_BEACON_MAX_EVENTS": str(MAX_EVENTS),
        "SOCIALPROOF_BEACON_BURST": str(BURST),
        "SOCIALPROOF_BEACON_RATE_PER_S": "0.2",
        **extra,
    }


@pytest.fixture(scope="module")
def base_url(stack: Stack, private: tuple[Settings, str]) -> Iterator[str]:
    with extra_notifier(stack, **env(private)) as url:
        yield url


@pytest.fixture(scope="module")
def api(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:  # beacons are public
        yield client


def published(settings: Settings, timeout: float = 10) -> list[Event]:
    """Every event on this module's interactions topic, read to the current end."""
    topic = topic_name(settings, INTERACTIONS)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"tests-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[Event] = []
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        while left:
            assert time.monotonic() < deadline, f"could not read {topic} to its end {ends}"
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            assert msg.key() == codec.decode(msg.value()).payload.visitor_id.encode()
            out.append(codec.decode(msg.value()))
            if msg.offset() >= ends[msg.partition()] - 1:
                left.discard(msg.partition())
        return out
    finally:
        consumer.close()


def of(events: list[Event], visitor: str) -> list[Event]:
    return [e for e in events if e.payload.visitor_id == visitor]


def visitor() -> str:
    return f"v-{uuid.uuid4().hex[:16]}"


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def impression(product: str, at: datetime | None = None, **extra: object) -> dict:
    return {"kind": "impression", "product_id": product, "at": iso(at or now()), **extra}


def now() -> datetime:
    """Now to the millisecond, as a browser's clock gives it."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def send(api: httpx.Client, body: object, *, as_text: bool = True, **kwargs) -> httpx.Response:
    """A beacon as ``navigator.sendBeacon`` sends it (text/plain JSON), or as application/json."""
    headers = kwargs.pop("headers", {})
    if as_text:
        headers["Content-Type"] = "text/plain;charset=UTF-8"
        return api.post("/v1/beacons", content=orjson.dumps(body), headers=headers, **kwargs)
    return api.post("/v1/beacons", json=body, headers=headers, **kwargs)


def experiment(api: httpx.Client, uid, **body: object) -> dict:
    answer = api.post(
        "/v1/experiments",
        json={
            "id": uid("exp"),
            "variants": [{"name": "control", "badge": "none"}, {"name": "friends"}],
            "split": [50, 50],
            **body,
        },
        headers=ADMIN,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def variant_of(api: httpx.Client, experiment_id: str, visitor_id: str) -> str:
    answer = api.get(f"/v1/experiments/{experiment_id}/assignment?visitor_id={visitor_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["variant"]


def test_a_beacon_publishes_each_event_once_acknowledged_with_deterministic_ids(
    api: httpx.Client, private: tuple[Settings, str], uid
) -> None:
    mine, _ = private
    exp = experiment(api, uid, products=["p1", "p2"], attribution_window_h=48)
    v, at = visitor(), now() - timedelta(seconds=30)
    mine_variant = variant_of(api, exp["id"], v)
    in_exp = {"experiment_id": exp["id"], "variant": mine_variant}
    body = {
        "visitor_id": v,
        "events": [
            impression("p1", at, **in_exp),
            {"kind": "click", "product_id": "p1", "at": iso(at + timedelta(seconds=2)), **in_exp},
            {"kind": "dismiss", "product_id": "p3", "at": iso(at + timedelta(seconds=3))},
        ],
    }
    # When the widget sends it with sendBeacon's text/plain
    answer = send(api, body)
    # Then it is accepted once every event was acknowledged, and each is on the topic
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 3}
    events = of(published(mine), v)
    assert [e.event_type for e in events] == ["badge.viewed", "badge.clicked", "badge.dismissed"]
    for event, sent in zip(events, body["events"], strict=True):
        at_ms = int(datetime.fromisoformat(sent["at"]).timestamp() * 1000)
        name = f"{v}|{sent['kind']}|{sent['product_id']}|{sent.get('experiment_id', '')}|{at_ms}"
        assert event.event_id == uuid.uuid5(BEACON_EVENT_NAMESPACE, name)
        assert event.occurred_at == datetime.fromisoformat(sent["at"])
        assert event.producer == "notifier"
        p = event.payload
        assert (p.visitor_id, p.viewer_id, p.product_id) == (v, None, sent["product_id"])
        assert p.experiment_id == sent.get("experiment_id")
        assert p.variant == sent.get("variant")
    # And the windows are stamped: the experiment's 48 h, 24 h without one
    assert [e.payload.attribution_window_s for e in events] == [48 * 3600, 48 * 3600, 86400]
    # When the same beacon is sent again (as JSON this time), the events get the same ids, so
    # the processor drops them as duplicates
    again = send(api, body, as_text=False)
    assert again.status_code == 202, again.text
    twice = of(published(mine), v)
    assert len(twice) == 6
    assert [e.event_id for e in twice[3:]] == [e.event_id for e in events]


def test_the_viewer_is_on_the_events_only_with_a_valid_viewer_token(
    api: httpx.Client, private: tuple[Settings, str]
) -> None:
    mine, _ = private
    token = api.post("/v1/viewer-tokens", json={"viewer_id": "u-42"}, headers=ADMIN)
    assert token.status_code == 201, token.text
    bearer, header_v, query_v, bad_v = token.json()["token"], visitor(), visitor(), visitor()
    # a header where the client can set one, the query where it cannot (sendBeacon)
    by_header = send(
        api,
        {"visitor_id": header_v, "events": [impression("p1")]},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    by_query = api.post(
        f"/v1/beacons?viewer_token={bearer}",
        content=orjson.dumps({"visitor_id": query_v, "events": [impression("p1")]}),
        headers={"Content-Type": "text/plain"},
    )
    assert (by_header.status_code, by_query.status_code) == (202, 202)
    tampered = send(
        api,
        {"visitor_id": bad_v, "events": [impression("p1")]},
        headers={"Authorization": f"Bearer {bearer[:-2]}xx"},
    )
    assert tampered.status_code == 401, tampered.text
    assert tampered.json()["error"] == "invalid_viewer_token"
    events = published(mine)
    assert [e.payload.viewer_id for e in of(events, header_v)] == ["u-42"]
    assert [e.payload.viewer_id for e in of(events, query_v)] == ["u-42"]
    assert of(events, bad_v) == []


def test_bad_beacons_are_refused_naming_the_field_and_publish_nothing(
    api: httpx.Client, private: tuple[Settings, str], redis_client: redis_sync.Redis, uid
) -> None:
    mine, ns = private
    redis_client.set(Keys(ns).product_category("p-cat"), "garden")
    exp = experiment(api, uid, products=["p1"])
    by_cat = experiment(api, uid, category="kitchen")
    later = experiment(api, uid, products=["p1"], starts_at=iso(now() + timedelta(days=1)))
    t, used = now(), []

    def beacon(*events: dict, v: str | None = None) -> dict:
        used.append(v or visitor())
        return {"visitor_id": used[-1], "events": list(events)}

    def in_exp(product: str, *, right: bool, **extra: object) -> dict:
        """A beacon of a new visitor in ``exp`` with their variant (right) or the other."""
        v = visitor()
        theirs = variant_of(api, exp["id"], v)
        other = "control" if theirs == "friends" else "friends"
        chosen = theirs if right else other
        return beacon(impression(product, experiment_id=exp["id"], variant=chosen, **extra), v=v)

    cases: list[tuple[object, str]] = [
        (beacon({**impression("p1"), "kind": "hover"}), "events[0].kind"),
        ({"visitor_id": "short", "events": [impression("p1")]}, "visitor_id"),
        ({"visitor_id": "v with spaces!", "events": [impression("p1")]}, "visitor_id"),
        (beacon(impression("p 1")), "events[0].product_id"),
        (beacon(impression("p1", t + timedelta(minutes=10))), "events[0].at"),
        (beacon(impression("p1", t - timedelta(days=8))), "events[0].at"),
        (beacon({**impression("p1"), "at": "2026-12-01T10:00:00"}), "events[0].at"),
        (beacon(*[impression("p1")] * (MAX_EVENTS + 1)), "events"),
        (beacon(), "events"),
        (beacon({**impression("p1"), "colour": "red"}), "events[0].colour"),
        (
            beacon(impression("p1", experiment_id=uid("nope"), variant="control")),
            "events[0].experiment_id",
        ),
        (in_exp("p2", right=True), "events[0].product_id"),
        (
            beacon(impression("p-cat", experiment_id=by_cat["id"], variant="control")),
            "events[0].product_id",
        ),
        (in_exp("p1", right=False), "events[0].variant"),
        (beacon(impression("p1", experiment_id=exp["id"])), "events[0].variant"),
        (beacon(impression("p1", variant="friends")), "events[0].variant"),
        (
            beacon(impression("p1", experiment_id=later["id"], variant="control")),
            "events[0].experiment_id",
        ),
        ([impression("p1")], "body"),
    ]
    for body, field in cases:
        answer = send(api, body)
        assert answer.status_code == 422, (body, answer.text)
        assert field in [f["field"] for f in answer.json()["fields"]], (body, answer.text)
    # a good event beside a bad one: the whole beacon is refused, naming the bad one
    mixed = beacon(impression("p1"), impression("p1", t + timedelta(hours=1)))
    assert [f["field"] for f in send(api, mixed).json()["fields"]] == ["events[1].at"]
    # not JSON, another media type, too large (declared, and streamed without a length)
    v = visitor()
    used.append(v)
    not_json = api.post("/v1/beacons", content=b"{not json", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400, not_json.text
    form = api.post("/v1/beacons", data={"visitor_id": v})
    assert form.status_code == 415, form.text
    huge = orjson.dumps({"visitor_id": v, "events": [impression("p" * 100)] * 200})
    assert len(huge) > 16384
    assert send(api, orjson.loads(huge)).status_code == 413
    streamed = api.post(
        "/v1/beacons",
        content=iter([huge[i : i + 1000] for i in range(0, len(huge), 1000)]),
        headers={"Content-Type": "text/plain"},
    )
    assert streamed.status_code == 413, streamed.text
    # And none of these visitors has anything on the topic
    events = published(mine)
    assert [e for v in used for e in of(events, v)] == []


def test_a_visitor_over_the_rate_gets_429_and_others_do_not(
    api: httpx.Client, private: tuple[Settings, str]
) -> None:
    mine, _ = private
    noisy, quiet = visitor(), visitor()
    # Given a visitor who spent the burst (0.2 beacons/s refill: none comes back meanwhile)
    answers = [send(api, {"visitor_id": noisy, "events": [impression("p1")]}) for _ in range(BURST)]
    assert [a.status_code for a in answers] == [202] * BURST
    # When they send one more, Then it is refused with when to retry, and not published
    over = send(api, {"visitor_id": noisy, "events": [impression("p1")]})
    assert over.status_code == 429, over.text
    assert int(over.headers["Retry-After"]) >= 1
    # And another visitor is not held back
    assert send(api, {"visitor_id": quiet, "events": [impression("p1")]}).status_code == 202
    events = published(mine)
    assert len(of(events, noisy)) == BURST and len(of(events, quiet)) == 1


@pytest.mark.parametrize("header", [{"Sec-GPC": "1"}, {"DNT": "1"}])
def test_gpc_and_dnt_mean_204_and_nothing_published(
    api: httpx.Client, private: tuple[Settings, str], header: dict[str, str]
) -> None:
    mine, _ = private
    v = visitor()
    body = {"visitor_id": v, "events": [impression("p1"), impression("p2")]}
    # When the browser asks not to be tracked, Then 204, even for a beacon that is bad
    answer = send(api, body, headers=dict(header))
    assert answer.status_code == 204, answer.text
    assert send(api, {"visitor_id": v, "events": "junk"}, headers=dict(header)).status_code == 204
    # And nothing was published: the same visitor's next beacon (same partition, same producer)
    # is the first and only thing of theirs on the topic
    marker = {"visitor_id": v, "events": [impression("p-marker")]}
    assert send(api, marker).status_code == 202
    assert [e.payload.product_id for e in of(published(mine), v)] == ["p-marker"]


def test_with_tracking_off_beacons_publish_nothing(
    stack: Stack, private: tuple[Settings, str]
) -> None:
    mine, _ = private
    v = visitor()
    with extra_notifier(stack, **env(private, SOCIALPROOF_INTERACTION_TRACKING="false")) as url:
        answer = httpx.post(
            f"{url}/v1/beacons",
            content=orjson.dumps({"visitor_id": v, "events": [impression("p1")]}),
            headers={"Content-Type": "text/plain"},
            timeout=5,
        )
        assert answer.status_code == 204, answer.text
    # the answer came after anything published was acknowledged (a 202 waits for that; a 204
    # publishes nothing): the topic read to its end now has nothing of the visitor
    assert of(published(mine), v) == []


def test_an_event_of_a_stopped_experiment_counts_for_the_plain_badge(
    api: httpx.Client, private: tuple[Settings, str], uid
) -> None:
    mine, _ = private
    exp = experiment(api, uid, products=["p1"], attribution_window_h=72)
    v = visitor()
    theirs = variant_of(api, exp["id"], v)
    stopped = api.post(f"/v1/experiments/{exp['id']}/stop", headers=ADMIN)
    assert stopped.status_code == 200, stopped.text
    # When the widget still reports an impression in it (sent before it learnt of the stop)
    at = now()
    body = {
        "visitor_id": v,
        "events": [impression("p1", at, experiment_id=exp["id"], variant=theirs)],
    }
    assert send(api, body).status_code == 202
    # Then it is published without the experiment, with the plain badge's 24 h window, under
    # the id it would have had in the experiment (a re-send from before the stop is a duplicate)
    (event,) = of(published(mine), v)
    assert (event.payload.experiment_id, event.payload.variant) == (None, None)
    assert event.payload.attribution_window_s == 86400
    at_ms = int(at.timestamp() * 1000)
    name = f"{v}|impression|p1|{exp['id']}|{at_ms}"
    assert event.event_id == uuid.uuid5(BEACON_EVENT_NAMESPACE, name)


def test_a_category_experiment_takes_the_products_filed_under_it(
    api: httpx.Client, private: tuple[Settings, str], redis_client: redis_sync.Redis, uid
) -> None:
    mine, ns = private
    category, product = uid("cat"), uid("p")
    # filed as the stream processor files a catalog event's category
    redis_client.set(Keys(ns).product_category(product), category)
    exp = experiment(api, uid, category=category)
    v = visitor()
    theirs = variant_of(api, exp["id"], v)
    body = {
        "visitor_id": v,
        "events": [impression(product, experiment_id=exp["id"], variant=theirs)],
    }
    answer = send(api, body)
    assert answer.status_code == 202, answer.text
    (event,) = of(published(mine), v)
    assert (event.payload.experiment_id, event.payload.variant) == (exp["id"], theirs)


def test_a_browser_on_another_origin_may_send_beacons(api: httpx.Client) -> None:
    origin = "https://shop.example"
    # sendBeacon's text/plain is a simple request; fetch with application/json is preflighted
    preflight = api.options(
        "/v1/beacons",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    simple = send(
        api,
        {"visitor_id": visitor(), "events": [impression("p1")]},
        headers={"Origin": origin},
    )
    assert simple.status_code == 202
    assert simple.headers["access-control-allow-origin"] in ("*", origin)
