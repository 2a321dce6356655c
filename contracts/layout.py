"""Where each key of the serving store lives: one Redis, or the shards of a Redis Cluster (#16).

The key families are :mod:`contracts.views`'s; this module says which *prefix* a key is built
under, so that no script ever touches two hash slots and a Redis Cluster can spread the work
over its masters.

The layout: **partition product facts, replicate user facts.** A namespace has ``shards`` product
shards and, when ``shards > 1``, one more *referrals shard*. Each shard is a complete copy of
today's single-node layout (:class:`contracts.views.Keys`) under the prefix
``{ns}:{<tag>}``: the hash tag puts every key of a shard in one slot, so the processor's one
script (``services/counters/counters.lua``) runs unchanged in each shard and never crosses a
slot. Which shard an event goes to (``services/counters/store.py``'s router):

- **Product-scoped events** (purchase and refund lines, reviews, shares, questions, answers,
  votes, moderation, badge interactions) go to the shard of their product,
  ``crc32(product) mod shards``. An order with lines in several shards is split: each shard
  records the lines of its own products, which is all its views need.
- **User-scoped facts** (friendships, privacy settings, names, erasures) and cancellations
  (which name an order, not its products) go to *every* shard. This is Kafka Streams'
  GlobalKTable idea: the small, slowly changing table is replicated beside every partition of
  the large one, so each shard answers friends_bought (``friends`` ∩ ``cbuyers``), the feed's
  consent and names, fan-out and erasure from its own slot. Each shard applies them with the
  same newest-wins facts as before, so they converge in any order, and an erasure reaches
  every shard, replays included (each shard's ``erased`` set).
- **Referrals and promotions** read across products and buyers in one decision (a sharer's
  progress counts buyers of every product of a category), so they run whole in the referrals
  shard: it receives the purchases that carry a link or a coupon, every refund and
  cancellation (a refund does not say whether its order was referred), shares with a link,
  promotion definitions and ends, product categories, and the user facts. Product shards get
  purchases and shares without their link and coupon, so their referral hooks do nothing. The
  rewards outbox is under the referrals shard's tag, so a reward transition and its outbox
  entry stay one atomic script.

With ``shards == 1`` (the default on a single Redis) the prefix is the namespace itself, with no
tag: the keys are exactly those a single node always had, and the single shard is also the
referrals shard. The same router and readers run in both cases.

Readers assemble across shards: per-product reads go to the product's shard; trending merges
the shards' buckets (a product lives in exactly one shard, so the merge is exact); a user's
question notes and badge-experiment figures are merged from every shard; referral figures
(``via``, ``sharers``, credits, rewards, promotions, categories) are read from the referrals
shard.

Costs, paid for not touching two slots: user facts are written ``shards + 1`` times (memory for
the social graph grows by that factor: ~30 KB per user per shard, deploy/README.md), and
referred purchases, link shares and refunds are applied twice (their product shard and the
referrals shard). The tags are chosen so that shard ``k`` of ``n`` hashes into the middle of the
``k``-th of ``n`` equal slot ranges, so a cluster whose masters hold equal contiguous ranges
(``redis-cli --cluster create``) gets ``n / masters`` shards each.

How many shards a namespace has is recorded beside the live-namespace pointer
(:func:`contracts.namespaces.pointer_key`, field ``shards:<ns>``): written once by the first
worker (:func:`default_shards`: 1 on a single Redis, :data:`CLUSTER_SHARDS` on a cluster), or by
``replay rebuild --shards N``, and read by every writer and reader, so they always agree. To
change it: rebuild into a new namespace with the new count, then switch.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from contracts.views import Keys

#: product shards on a Redis Cluster when nothing is recorded: divides evenly over 2, 3, 4, 6
#: and 12 masters
CLUSTER_SHARDS = 12
#: the referrals shard's tag
REFERRALS_TAG = "rw"


def layout_field(namespace: str) -> str:
    """The pointer hash's field that records a namespace's shard count."""
    return f"shards:{namespace}"


def default_shards(cluster: bool) -> int:
    return CLUSTER_SHARDS if cluster else 1


@cache
def shard_tag(shard: int, shards: int) -> str:
    """The hash tag of product shard ``shard`` of ``shards``: the first ``s<shards>.<shard>.<j>``
    whose slot falls in the middle half of the ``shard``-th of ``shards`` equal slot ranges."""
    width = REDIS_CLUSTER_HASH_SLOTS / shards
    low, high = (shard + 0.25) * width, (shard + 0.75) * width
    j = 0
    while True:
        tag = f"s{shards}.{shard}.{j}"
        if low <= key_slot(tag.encode()) < high:
            return tag
        j += 1


def product_shard(product_id: str, shards: int) -> int:
    """The product shard of a product (stable across processes and versions: crc32)."""
    if shards == 1:
        return 0
    return zlib.crc32(product_id.encode()) % shards


@dataclass(frozen=True)
class StoreLayout:
    """One namespace's shards. ``Keys`` of a shard build that shard's keys."""

    namespace: str
    shards: int = 1

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"shards must be at least 1, not {self.shards}")

    @property
    def sharded(self) -> bool:
        return self.shards > 1

    def prefix(self, shard: int) -> str:
        """The key prefix of product shard ``shard``."""
        if not self.sharded:
            return self.namespace
        return f"{self.namespace}:{{{shard_tag(shard, self.shards)}}}"

    @property
    def referrals_prefix(self) -> str:
        return f"{self.namespace}:{{{REFERRALS_TAG}}}" if self.sharded else self.namespace

    def shard_of(self, product_id: str) -> int:
        return product_shard(product_id, self.shards)

    def product_prefix(self, product_id: str) -> str:
        return self.prefix(self.shard_of(product_id))

    def product_keys(self, product_id: str) -> Keys:
        return Keys(self.product_prefix(product_id))

    @property
    def referrals_keys(self) -> Keys:
        return Keys(self.referrals_prefix)

    @property
    def product_prefixes(self) -> tuple[str, ...]:
        """Every product shard's prefix (the shards trending, notes and experiments merge)."""
        return tuple(self.prefix(k) for k in range(self.shards))

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Every shard's prefix: the product shards, then the referrals shard if separate."""
        if not self.sharded:
            return (self.namespace,)
        return (*self.product_prefixes, self.referrals_prefix)


def outbox_prefix(base: str, cluster: bool) -> str:
    """Where the base namespace's rewards outbox, its emission counters and the relay's
    checkpoint live: on a cluster under the referrals tag, so the script that decides a reward
    appends to the outbox in its own slot (the tag has no namespace in it, so every rebuild's
    referrals shard shares that slot); on one Redis where they always were."""
    return f"{base}:{{{REFERRALS_TAG}}}" if cluster else base


def resolve_shards(raw: dict[str, str] | None, namespace: str, cluster: bool) -> int:
    """A namespace's shard count: the recorded one, else the default for this kind of store
    (what the first worker records, so readers that start first agree with it)."""
    return parse_shards(raw, namespace) or default_shards(cluster)


def parse_shards(raw: dict[str, str] | None, namespace: str) -> int | None:
    """The recorded shard count of ``namespace`` in the pointer hash, None if not recorded."""
    value = (raw or {}).get(layout_field(namespace))
    return int(value) if value else None
