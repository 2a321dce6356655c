"""Unit tests of the services' views and the shared helpers they use: fed records in log order,
they must end in the right state, and replays or duplicates must change nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from contracts import codec
from contracts import events as ev
from contracts.topics import FRIENDSHIPS, ORDERS, PRODUCTS, REVIEWS, USERS, Topic, topic_for
from services.orders.book import OrderBook
from services.social.graph import SocialGraph
from socialproof.money import DecimalString, IsoCurrency
from socialproof.paging import paginate
from socialproof.productview import ProductTable
from socialproof.topicview import Record


class Log:
    """Numbers records per topic like a one-partition log would."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}

    def record(self, event: ev.Event | None, topic: Topic | None = None, key: str = "") -> Record:
        topic = topic or topic_for(event)  # type: ignore[arg-type]
        offset = self.offsets.get(topic.name, 0)
        self.offsets[topic.name] = offset + 1
        value = None if event is None else codec.encode(event)
        key_bytes = (key or topic.key_of(event)).encode() if event is not None or key else None
        return Record(topic.name, 0, offset, key_bytes, value)


def product(pid: str, active: bool = True) -> ev.ProductUpserted:
    return ev.ProductUpserted.create(
        {"product_id": pid, "name": "Mug", "price": "19.99", "currency": "EUR", "active": active},
        producer="catalog",
    )


def test_the_product_table_follows_upserts_deletes_and_tombstones() -> None:
    log, table = Log(), ProductTable()
    for record in (
        log.record(product("a")),
        log.record(product("b")),
        log.record(product("a", active=False)),
        log.record(ev.ProductDeleted.create({"product_id": "b"}, producer="catalog")),
        log.record(None, PRODUCTS, key="b"),
        log.record(product("c")),
        log.record(None, PRODUCTS, key="c"),  # compaction already dropped c's deleted event
    ):
        table.apply(record)
    assert set(table.products) == {"a"}
    assert table.products["a"].active is False


def purchase(order_id: str, lines: list[tuple[str, int]]) -> ev.PurchaseCompleted:
    return ev.PurchaseCompleted.create(
        {
            "order_id": order_id,
            "user_id": "u1",
            "currency": "EUR",
            "lines": [{"product_id": p, "quantity": q, "unit_price": "2.50"} for p, q in lines],
        },
        producer="orders",
    )


def refund(order_id: str, refund_id: str, lines: list[tuple[str, int]]) -> ev.OrderRefunded:
    return ev.OrderRefunded.create(
        {
            "refund_id": refund_id,
            "order_id": order_id,
            "user_id": "u1",
            "lines": [{"product_id": p, "quantity": q} for p, q in lines],
        },
        producer="orders",
    )


def test_the_order_book_counts_each_order_and_refund_once() -> None:
    log, book = Log(), OrderBook()
    first = purchase("o1", [("mug", 3), ("cup", 1)])
    events = [
        first,
        purchase("o1", [("mug", 9)]),  # a second copy of o1 (a retry): the first wins
        refund("o1", "r1", [("mug", 2)]),
        refund("o1", "r1", [("mug", 2)]),  # re-delivered
        refund("missing", "r2", [("mug", 1)]),  # no such order: ignored
    ]
    for event in events:
        book.apply(log.record(event))
    order = book.get("o1")
    assert order is not None and order.event_id == first.event_id
    assert order.total == Decimal("10.00")
    assert (order.refundable("mug"), order.refundable("cup")) == (1, 1)
    assert order.status == "partially_refunded" and list(order.refunds) == ["r1"]
    book.apply(log.record(refund("o1", "r3", [("mug", 1), ("cup", 1)])))
    assert order.status == "refunded"
    assert book.get("missing") is None


def test_a_cancelled_order_has_nothing_left_to_refund() -> None:
    log, book = Log(), OrderBook()
    book.apply(log.record(purchase("o1", [("mug", 2)])))
    cancel = ev.OrderCancelled.create({"order_id": "o1", "user_id": "u1"}, producer="orders")
    book.apply(log.record(cancel))
    order = book.get("o1")
    assert order is not None and order.status == "cancelled" and order.refundable("mug") == 0
    assert topic_for(cancel) is ORDERS


def social_events(*events: ev.Event) -> SocialGraph:
    log, graph = Log(), SocialGraph()
    for event in events:
        graph.apply(log.record(event))
    return graph


def friends(a: str, b: str, added: bool = True) -> ev.Event:
    cls = ev.FriendshipAdded if added else ev.FriendshipRemoved
    return cls.create({"user_id": a, "friend_id": b}, producer="social")


def review(review_id: str, user: str, product_id: str, rating: int, edit: bool = False) -> ev.Event:
    cls = ev.ReviewEdited if edit else ev.ReviewPosted
    payload = {"review_id": review_id, "user_id": user, "product_id": product_id, "rating": rating}
    return cls.create(payload, producer="social")


def test_friendships_are_symmetric_and_idempotent() -> None:
    graph = social_events(
        friends("ana", "ben"),
        friends("ana", "ben"),
        friends("cem", "ana"),
        friends("ben", "ana", added=False),
        friends("ben", "ana", added=False),
    )
    assert graph.friends_of("ana") == ["cem"] and graph.friends_of("cem") == ["ana"]
    assert graph.friends_of("ben") == []
    assert topic_for(friends("a", "b")) is FRIENDSHIPS


def test_one_review_per_user_and_product() -> None:
    graph = social_events(
        review("r1", "ana", "mug", 4),
        review("r1", "ana", "mug", 2, edit=True),
        review("r2", "ana", "mug", 5),  # another id for the same pair replaces the first
        review("r3", "ben", "mug", 3),
    )
    assert [(r.review_id, r.rating) for r in graph.reviews_of_product("mug")] == [
        ("r2", 5),
        ("r3", 3),
    ]
    deleted = ev.ReviewDeleted.create(
        {"review_id": "r2", "user_id": "ana", "product_id": "mug"}, producer="social"
    )
    graph.apply(Log().record(deleted))
    assert graph.review_by("ana", "mug") is None and topic_for(deleted) is REVIEWS


def test_erasure_removes_the_user_everywhere_and_ignores_later_events() -> None:
    erased = ev.UserErased.create({"user_id": "ana"}, producer="social")
    graph = social_events(
        ev.UserProfileUpdated.create({"user_id": "ana", "first_name": "Ana"}, producer="social"),
        ev.PrivacySettingsChanged.create(
            {"user_id": "ana", "share_purchases_with_friends": True, "show_in_activity_feed": True},
            producer="social",
        ),
        friends("ana", "ben"),
        review("r1", "ana", "mug", 5),
        erased,
        friends("ben", "ana"),  # after the erasure: ignored
        review("r2", "ana", "cup", 1),
    )
    assert "ana" in graph.erased and topic_for(erased) is USERS
    assert graph.friends_of("ben") == [] and graph.friends_of("ana") == []
    assert graph.reviews == {} and "ana" not in graph.privacy and "ana" not in graph.first_names


def test_paginate_walks_sorted_items_by_cursor() -> None:
    items = ["a", "b", "c", "d", "e"]
    page, cursor = paginate(items, str, None, 2)
    assert (page, cursor) == (["a", "b"], "b")
    page, cursor = paginate(items, str, cursor, 2)
    assert (page, cursor) == (["c", "d"], "d")
    assert paginate(items, str, cursor, 2) == (["e"], None)
    # a cursor whose item disappeared still continues after it
    assert paginate(["a", "c"], str, "b", 2) == (["c"], None)


def test_money_is_a_decimal_string_and_currencies_are_iso_4217() -> None:
    price = TypeAdapter(DecimalString)
    assert price.validate_python("19.99") == Decimal("19.99")
    for bad in (19.99, 19, "1e3", "-1", "1.23456", "123456789"):
        with pytest.raises(ValidationError):
            price.validate_python(bad)
    currency = TypeAdapter(IsoCurrency)
    assert currency.validate_python("JPY") == "JPY"
    for bad in ("XYZ", "eur", "EURO"):
        with pytest.raises(ValidationError):
            currency.validate_python(bad)
