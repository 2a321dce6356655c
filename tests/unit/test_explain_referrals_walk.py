"""The cross-shard walk of ``bought_via_shares``' second phase
(:func:`services.notifier.explain_referrals.walk_other_buyers`, issue #16) against an in-memory
sorted set with ties: page after page from the positions it gives, it lists exactly the buyers
with referred purchases, newest first, each once, whatever the page size, and never walks more
than the budget a page (the same contract as ``explain.lua``'s walk on one shard)."""

from __future__ import annotations

import random

import pytest

from services.notifier import explain_referrals as er

#: buyers:{p} of the fake product shard: (member, score as Redis writes it)
BUYERS = sorted(
    ((f"b{i:04d}", str(1_000 + (i * 7919) % 60)) for i in range(700)),  # many ties
    key=lambda ms: (float(ms[1]), ms[0]),
    reverse=True,
)
REFERRED = {m for m, _ in random.Random(3).sample(BUYERS, 40)}


def zrevrange_from(start: str, skip: int, count: int) -> list[tuple[str, str]]:
    """ZREVRANGEBYSCORE buyers start -inf WITHSCORES LIMIT skip count."""
    top = float(start)
    return [ms for ms in BUYERS if float(ms[1]) <= top][skip : skip + count]


class Fake:
    def __init__(self) -> None:
        self.round_trips = 0

    async def buyers(self, start: str, skip: int, count: int) -> list[tuple[str, str]]:
        self.round_trips += 1
        return zrevrange_from(start, skip, count)

    async def read(self, kind: str, ns: str, product: str, *members: str) -> dict:
        assert (kind, ns, product) == ("V", "ns:{rw}", "p")
        self.round_trips += 1
        return {"items": [{"u": m} if m in REFERRED else False for m in members]}


@pytest.mark.parametrize("budget", [er.WALK_BUDGET, 50])
@pytest.mark.parametrize("limit", [1, 3, 7, 1000])
async def test_pages_list_exactly_the_referred_buyers_in_order_within_the_budget(
    limit: int, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(er, "WALK_BUDGET", budget)
    fake = Fake()
    listed: list[str] = []
    position: tuple[str, int] | None = ("+inf", 0)
    pages = 0
    while position is not None:
        before = len(zrevrange_from(position[0], position[1], len(BUYERS)))
        items, position = await er.walk_other_buyers(
            fake.read, fake.buyers, "ns:{rw}", "p", position, limit
        )
        after = 0 if position is None else len(zrevrange_from(*position, len(BUYERS)))
        pages += 1
        assert pages <= len(BUYERS), "the walk does not move on"
        # each page: at most `limit` buyers, at most the budget walked, and a next position
        # only when buyers are left after it (no empty last page)
        assert position is None or after > 0
        assert len(items) <= limit and before - after <= budget
        listed += [item["u"] for item in items]
    # all pages: every referred buyer once, newest first (ties by id, descending)
    assert listed == [m for m, _ in BUYERS if m in REFERRED]
    assert pages >= min(len(REFERRED) // limit, len(BUYERS) // budget)
