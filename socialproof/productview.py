"""The product table every service that needs products keeps, built from ``catalog.products``.

The catalog writes the topic and reads it back for its own API; orders reads it to validate order
lines. Neither calls the other: the compacted topic is the interface. A delete arrives as a
``product.deleted`` event followed by a tombstone (no value) with the same key; either removes the
product, so the table is right whether or not compaction already dropped the event.
"""

from __future__ import annotations

from contracts import codec
from contracts.events import ProductDeleted, ProductFields, ProductUpserted
from contracts.topics import PRODUCTS
from socialproof.topicview import Record


class ProductTable:
    """product_id -> current fields; feed it the records of ``catalog.products`` in log order."""

    topic = PRODUCTS

    def __init__(self) -> None:
        self.products: dict[str, ProductFields] = {}

    def get(self, product_id: str) -> ProductFields | None:
        return self.products.get(product_id)

    def apply(self, record: Record) -> None:
        if record.value is None:  # tombstone
            if record.key_str is not None:
                self.products.pop(record.key_str, None)
            return
        event = codec.decode(record.value)
        if isinstance(event, ProductUpserted):
            self.products[event.payload.product_id] = event.payload
        elif isinstance(event, ProductDeleted):
            self.products.pop(event.payload.product_id, None)
