"""Reads a product's social proof from the serving store (the layout in :mod:`contracts.views`).

Windows are evaluated at read time against the event times stored by the processor, so they
expire by themselves without any event arriving.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from contracts.views import BOUGHT_WINDOWS_MS, Keys


class BoughtCounts(BaseModel):
    h1: int = Field(alias="1h", serialization_alias="1h", description="distinct buyers, last hour")
    h24: int = Field(alias="24h", serialization_alias="24h", description="distinct buyers, 24 h")
    d7: int = Field(alias="7d", serialization_alias="7d", description="distinct buyers, 7 days")


class ReviewSummary(BaseModel):
    count: int = 0
    average: float | None = Field(default=None, description="two decimals; null without reviews")
    histogram: dict[str, int] = Field(
        default_factory=lambda: {str(stars): 0 for stars in range(1, 6)}
    )


class ShareCounts(BaseModel):
    h1: int = Field(default=0, serialization_alias="1h")
    h24: int = Field(default=0, serialization_alias="24h")
    total: int = 0
    by_channel: dict[str, int] = Field(default_factory=dict)


class Proof(BaseModel):
    product_id: str
    bought: BoughtCounts
    reviews: ReviewSummary
    shares: ShareCounts
    as_of: datetime


class ProofReader:
    def __init__(self, redis: aioredis.Redis, namespace: str) -> None:
        self.redis = redis
        self.keys = Keys(namespace)

    async def read_many(self, product_ids: list[str], now_ms: int | None = None) -> list[Proof]:
        """One pipelined round trip for any number of products."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            for product_id in product_ids:
                buyers = self.keys.buyers(product_id)
                for window_ms in BOUGHT_WINDOWS_MS.values():
                    pipe.zcount(buyers, now_ms - window_ms, "+inf")
            counts = await pipe.execute()
        as_of = datetime.fromtimestamp(now_ms / 1000, UTC)
        width = len(BOUGHT_WINDOWS_MS)
        proofs = []
        for i, product_id in enumerate(product_ids):
            window = dict(zip(BOUGHT_WINDOWS_MS, counts[i * width : (i + 1) * width], strict=True))
            proofs.append(
                Proof(
                    product_id=product_id,
                    bought=BoughtCounts.model_validate(window),
                    reviews=ReviewSummary(),
                    shares=ShareCounts(),
                    as_of=as_of,
                )
            )
        return proofs

    async def read(self, product_id: str, now_ms: int | None = None) -> Proof:
        return (await self.read_many([product_id], now_ms))[0]


def to_json(proof: Proof) -> dict:
    return proof.model_dump(mode="json", by_alias=True)
