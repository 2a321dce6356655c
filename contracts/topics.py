"""The typed topic registry: every Kafka topic socialproof uses, read by every part of the system.

Producers take the name and the record key from here, the stream processor subscribes from here,
the dev stack and tests create topics from here, and the deployment's KafkaTopic resources are
generated from here. One writer per topic: ``writer`` names the only service allowed to produce
to it (the dead-letter topic is written by the stream processor).

Show it with ``socialproof contracts topics``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import events as ev

FOREVER = -1
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    #: what the record key is, in words (and what ``key_of`` returns)
    key: str
    key_of: Callable[[ev.Event], str] = field(repr=False)
    value_types: tuple[type[ev.Event], ...]
    writer: str
    partitions: int = 6
    cleanup_policy: Literal["delete", "compact"] = "delete"
    retention_ms: int = FOREVER
    description: str = ""
    extra_config: tuple[tuple[str, str], ...] = ()

    def accepts(self, event: ev.Event) -> bool:
        return isinstance(event, self.value_types)

    @property
    def config(self) -> dict[str, str]:
        """Topic-level Kafka configuration, as given to CreateTopics and KafkaTopic resources."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **dict(self.extra_config),
        }


def _payload(attr: str) -> Callable[[ev.Event], str]:
    return lambda e: str(getattr(e.payload, attr))


def _friend_pair(e: ev.Event) -> str:
    # Both directions of a friendship land on one partition, so add/remove stay ordered.
    a, b = sorted((e.payload.user_id, e.payload.friend_id))  # type: ignore[attr-defined]
    return f"{a}|{b}"


PRODUCTS = Topic(
    name="catalog.products",
    key="product_id",
    key_of=_payload("product_id"),
    value_types=(ev.ProductUpserted, ev.ProductDeleted),
    writer="catalog",
    cleanup_policy="compact",
    description="Product catalogue; compacted, a delete is a deleted event then a tombstone.",
)

ORDERS = Topic(
    name="orders.events",
    key="order_id",
    key_of=_payload("order_id"),
    value_types=(ev.PurchaseCompleted, ev.OrderRefunded, ev.OrderCancelled),
    writer="orders",
    description="Purchases, refunds and cancellations; kept forever so counters can be rebuilt.",
)

FRIENDSHIPS = Topic(
    name="social.friendships",
    key="sorted user pair 'a|b'",
    key_of=_friend_pair,
    value_types=(ev.FriendshipAdded, ev.FriendshipRemoved),
    writer="social",
    description="Symmetric friendships between users.",
)

REVIEWS = Topic(
    name="social.reviews",
    key="product_id",
    key_of=_payload("product_id"),
    value_types=(ev.ReviewPosted, ev.ReviewEdited, ev.ReviewDeleted),
    writer="social",
    description="Reviews: one per user and product, posted, edited, deleted.",
)

SHARES = Topic(
    name="social.shares",
    key="product_id",
    key_of=_payload("product_id"),
    value_types=(ev.ProductShared,),
    writer="social",
    description="Products shared by users on a channel.",
)

USERS = Topic(
    name="social.users",
    key="user_id",
    key_of=_payload("user_id"),
    value_types=(ev.PrivacySettingsChanged, ev.UserProfileUpdated, ev.UserErased),
    writer="social",
    description="Per-user privacy consent, first name, and erasure.",
)

QUESTIONS = Topic(
    name="social.questions",
    key="product_id",
    key_of=_payload("product_id"),
    value_types=(ev.QuestionAsked, ev.AnswerPosted, ev.AnswerVoted, ev.AnswerAccepted,
                 ev.QaModerated),
    writer="social",
    description="Shoppers' questions about products, answers, helpful votes, acceptance and "
    "moderation; keyed by product so one product's Q&A stays in order.",
)

PROMOTIONS = Topic(
    name="catalog.promotions",
    key="promotion_id",
    key_of=_payload("promotion_id"),
    value_types=(ev.PromotionDefined, ev.PromotionEnded),
    writer="catalog",
    partitions=3,
    description="Share-to-unlock promotions, defined, changed and ended by the shop.",
)

REWARDS = Topic(
    name="promotions.rewards",
    key="reward_id",
    key_of=_payload("reward_id"),
    value_types=(ev.RewardEarned, ev.RewardWithdrawn),
    writer="social-processor",
    partitions=1,
    description="Rewards earned and withdrawn, emitted by the stream processor exactly once per "
    "transition through Kafka transactions (read them read_committed); the orders service turns "
    "them into coupons.",
)

INTERACTIONS = Topic(
    name="storefront.interactions",
    key="visitor_id",
    key_of=_payload("visitor_id"),
    value_types=(ev.BadgeViewed, ev.BadgeClicked, ev.BadgeDismissed),
    writer="notifier",
    description="Badge impressions, clicks and dismissals reported by the widget's beacons "
    "(pseudonymous visitors); kept forever so experiment results can be rebuilt.",
)

EXPERIMENTS = Topic(
    name="storefront.experiments",
    key="experiment_id",
    key_of=_payload("experiment_id"),
    value_types=(ev.ExperimentStarted, ev.ExperimentStopped),
    writer="notifier",
    partitions=1,
    description="A/B experiments on badges, started and stopped by the shop; every notifier "
    "process reads it whole to assign visitors alike.",
)

DEAD_LETTERS = Topic(
    name="socialproof.deadletter",
    key="source topic/partition/offset",
    key_of=lambda e: "",
    value_types=(),
    writer="social-processor",
    partitions=1,
    retention_ms=30 * DAY_MS,
    # base64 of a record at the 1 MiB limit is ~1.4 MiB; poison records can be larger still
    extra_config=(("max.message.bytes", str(8 * 1024 * 1024)),),
    description="Records the stream processor could not use, with the reason and origin.",
)

#: every event topic, in a stable order
EVENT_TOPICS: tuple[Topic, ...] = (
    PRODUCTS, ORDERS, FRIENDSHIPS, REVIEWS, SHARES, USERS, QUESTIONS, PROMOTIONS, REWARDS,
    INTERACTIONS, EXPERIMENTS,
)
#: what the stream processor consumes (and a rebuild replays): every event topic but its output
#: and the experiment definitions (results need only the interactions, which carry their
#: experiment, variant and window; the notifier reads the definitions)
PROCESSOR_TOPICS: tuple[Topic, ...] = tuple(
    t for t in EVENT_TOPICS if t is not REWARDS and t is not EXPERIMENTS
)
ALL_TOPICS: tuple[Topic, ...] = EVENT_TOPICS + (DEAD_LETTERS,)
BY_NAME: dict[str, Topic] = {t.name: t for t in ALL_TOPICS}


def topic_for(event: ev.Event) -> Topic:
    """The one topic an event type is published to."""
    for topic in EVENT_TOPICS:
        if topic.accepts(event):
            return topic
    raise LookupError(f"no topic carries {event.event_type}")


class DeadLetter(BaseModel):
    """The value of a dead-letter record: the original bytes, why they failed, where from."""

    model_config = ConfigDict(frozen=True)

    source_topic: str
    source_partition: int
    source_offset: int
    source_key_b64: str | None = None
    value_b64: str | None = Field(description="the original record value, base64, byte for byte")
    reason: str = Field(description="stable code: not_json, too_large, unknown_event_type, …")
    error: str = Field(description="what was wrong, for a person")
    failed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    consumer: str

    @staticmethod
    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()

    def original_value(self) -> bytes | None:
        return None if self.value_b64 is None else base64.b64decode(self.value_b64)
