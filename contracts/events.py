"""Every integration event socialproof publishes, as Pydantic v2 models in one envelope.

The wire format is the JSON of the envelope (UTF-8), so any Kafka client can produce a valid
event, e.g. with kcat::

    {"event_id": "3f0c…", "event_type": "purchase.completed", "schema_version": 1,
     "occurred_at": "2026-11-24T10:00:00Z", "producer": "orders",
     "payload": {"order_id": "o1", "user_id": "u1", "currency": "EUR", "lines": [...]}}

Rules of the contract:
- ``event_type`` is an explicit, past-tense wire name; it never follows the Python class name.
- ``schema_version`` starts a version line. Within a line only new *optional* payload fields may
  be added (``tests/unit/test_contracts.py`` enforces this against ``contracts/schemas/``), and
  readers ignore fields they do not know. A breaking change starts a new version line.
- ``occurred_at`` is timezone-aware and normalised to UTC: it is the event time that windows use.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

# --- shared field types -------------------------------------------------------------------------

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"),
]
"""Ids of users, products, orders…: printable, no spaces, usable inside Redis keys and URLs."""

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""ISO-4217 alphabetic code, upper case (EUR, USD…)."""

LinkToken = Annotated[str, StringConstraints(pattern=r"^lk-[a-z2-7]{26}$")]
"""A share's referral link token: ``lk-`` and 26 base32 characters (130 random bits), made by the
social service for one share; unguessable and not derived from the user id."""

VisitorId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
"""A pseudonymous storefront visitor: a random first-party id the widget keeps in the shop's own
storage and rotates (never derived from a person), or the shop's own pseudonymous id."""

VariantName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
"""An experiment variant's name: lower case, short (``control``, ``friends``, ``counts``)."""

CouponCode = Annotated[str, StringConstraints(pattern=r"^SP-[0-9A-F]{16}$")]
"""A reward coupon: ``SP-`` and 16 hex digits, a keyed hash of the reward id made by the stream
processor (``SOCIALPROOF_COUPON_SECRET``), so it cannot be guessed from the reward."""


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+00:04 has no UTC time: a validation error, not a 500
        raise ValueError("out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


def _money_from_str(value: Any) -> Any:
    # Floats lose cents (0.1 + 0.2); the wire carries decimals as strings only.
    if isinstance(value, float):
        raise ValueError('must be a decimal string such as "19.99", not a JSON number')
    return value


# The constraints come before the float check so that pydantic-core enforces them natively; after
# a BeforeValidator they would run as Python validators, 3x slower (measured: ~6 us -> ~2 us per
# amount, on every purchase the stream processor decodes). The published schema stays the one
# consumers already have.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=4),
    BeforeValidator(_money_from_str),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string"}],
            "decimal_places": 4,
            "examples": ["19.99"],
            "ge": 0,
            "max_digits": 12,
        },
        mode="validation",
    ),
    WithJsonSchema(
        {"decimal_places": 4, "examples": ["19.99"], "type": "string"}, mode="serialization"
    ),
]


class _Strict(BaseModel):
    # Readers ignore unknown fields so that a newer producer within the same version line (which
    # may only add optional fields) never breaks an older consumer.
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)


# --- envelope -----------------------------------------------------------------------------------

P = TypeVar("P", bound=BaseModel)


class Event(_Strict, Generic[P]):
    """The integration-event envelope: identity, type, version, event time, origin, payload."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: str
    schema_version: int = Field(ge=1)
    occurred_at: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str = Field(min_length=1, max_length=64)
    payload: P

    #: wire name of this event type; each concrete class pins it with a Literal
    EVENT_TYPE: ClassVar[str]
    #: newest schema version this code understands for the type
    SCHEMA_VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

    @classmethod
    def create(cls, payload: Any, *, producer: str, **envelope: Any):
        """Build an event of this type with the envelope filled in (new id, now, version)."""
        return cls(
            event_type=cls.EVENT_TYPE,
            schema_version=cls.SCHEMA_VERSION,
            producer=producer,
            payload=payload,
            **envelope,
        )


# --- catalog ------------------------------------------------------------------------------------


class ProductFields(_Strict):
    product_id: Identifier
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    price: Money
    currency: CurrencyCode
    image_url: str | None = Field(default=None, max_length=2048)
    category: str | None = Field(default=None, max_length=100)
    active: bool = True


class ProductUpserted(Event[ProductFields]):
    EVENT_TYPE: ClassVar[str] = "product.upserted"
    event_type: Literal["product.upserted"] = "product.upserted"


class ProductRef(_Strict):
    product_id: Identifier


class ProductDeleted(Event[ProductRef]):
    EVENT_TYPE: ClassVar[str] = "product.deleted"
    event_type: Literal["product.deleted"] = "product.deleted"


# --- orders -------------------------------------------------------------------------------------


class OrderLine(_Strict):
    product_id: Identifier
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money


class PurchaseCompletedPayload(_Strict):
    order_id: Identifier
    user_id: Identifier
    currency: CurrencyCode
    lines: list[OrderLine] = Field(min_length=1, max_length=100)
    #: the share link the buyer arrived through (``ProductShared.link_token``); absent: none.
    #: Attribution is the stream processor's (services/counters/referrals.lua)
    referral: LinkToken | None = None
    #: a reward coupon redeemed on this order (``RewardEarned.coupon``) and what it took off
    coupon: CouponCode | None = None
    discount: Money | None = None
    #: the storefront visitor who bought (``BadgeViewed.visitor_id``), so that purchases of
    #: anonymous visitors can be attributed to the badge variant they saw; absent: unknown
    visitor_id: VisitorId | None = None


class PurchaseCompleted(Event[PurchaseCompletedPayload]):
    EVENT_TYPE: ClassVar[str] = "purchase.completed"
    event_type: Literal["purchase.completed"] = "purchase.completed"


class RefundLine(_Strict):
    product_id: Identifier
    quantity: int = Field(ge=1, le=10_000)


class OrderRefundedPayload(_Strict):
    refund_id: Identifier
    order_id: Identifier
    user_id: Identifier
    #: the refunded quantities per product; a whole-order refund lists every line
    lines: list[RefundLine] = Field(min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=500)


class OrderRefunded(Event[OrderRefundedPayload]):
    EVENT_TYPE: ClassVar[str] = "order.refunded"
    event_type: Literal["order.refunded"] = "order.refunded"


class OrderCancelledPayload(_Strict):
    order_id: Identifier
    user_id: Identifier
    reason: str | None = Field(default=None, max_length=500)


class OrderCancelled(Event[OrderCancelledPayload]):
    """The whole order is void: counters treat it as a full refund of every line."""

    EVENT_TYPE: ClassVar[str] = "order.cancelled"
    event_type: Literal["order.cancelled"] = "order.cancelled"


# --- social -------------------------------------------------------------------------------------


class ReviewPayload(_Strict):
    review_id: Identifier
    user_id: Identifier
    product_id: Identifier
    rating: int = Field(ge=1, le=5)
    text: str = Field(default="", max_length=5000)


class ReviewPosted(Event[ReviewPayload]):
    EVENT_TYPE: ClassVar[str] = "review.posted"
    event_type: Literal["review.posted"] = "review.posted"


class ReviewEdited(Event[ReviewPayload]):
    EVENT_TYPE: ClassVar[str] = "review.edited"
    event_type: Literal["review.edited"] = "review.edited"


class ReviewRef(_Strict):
    review_id: Identifier
    user_id: Identifier
    product_id: Identifier


class ReviewDeleted(Event[ReviewRef]):
    EVENT_TYPE: ClassVar[str] = "review.deleted"
    event_type: Literal["review.deleted"] = "review.deleted"


ShareChannel = Literal["link", "facebook", "x", "whatsapp", "email", "other"]


class ProductSharedPayload(_Strict):
    share_id: Identifier
    user_id: Identifier
    product_id: Identifier
    channel: ShareChannel
    #: the referral link token of this share (absent from older producers: no link)
    link_token: LinkToken | None = None


class ProductShared(Event[ProductSharedPayload]):
    EVENT_TYPE: ClassVar[str] = "product.shared"
    event_type: Literal["product.shared"] = "product.shared"


class FriendshipPayload(_Strict):
    user_id: Identifier
    friend_id: Identifier


class FriendshipAdded(Event[FriendshipPayload]):
    EVENT_TYPE: ClassVar[str] = "friendship.added"
    event_type: Literal["friendship.added"] = "friendship.added"


class FriendshipRemoved(Event[FriendshipPayload]):
    EVENT_TYPE: ClassVar[str] = "friendship.removed"
    event_type: Literal["friendship.removed"] = "friendship.removed"


class PrivacySettingsPayload(_Strict):
    user_id: Identifier
    share_purchases_with_friends: bool
    show_in_activity_feed: bool
    #: a live note when a shopper asks about a product this user bought; absent (an older
    #: producer) means no, as for a user who never chose: privacy by default
    notify_on_questions: bool | None = None


class PrivacySettingsChanged(Event[PrivacySettingsPayload]):
    EVENT_TYPE: ClassVar[str] = "privacy.settings_changed"
    event_type: Literal["privacy.settings_changed"] = "privacy.settings_changed"


class UserProfilePayload(_Strict):
    user_id: Identifier
    #: the only name socialproof ever shows ("Ana bought this"); never a full name
    first_name: str = Field(min_length=1, max_length=64)


class UserProfileUpdated(Event[UserProfilePayload]):
    EVENT_TYPE: ClassVar[str] = "user.profile_updated"
    event_type: Literal["user.profile_updated"] = "user.profile_updated"


class UserRef(_Strict):
    user_id: Identifier


class UserErased(Event[UserRef]):
    EVENT_TYPE: ClassVar[str] = "user.erased"
    event_type: Literal["user.erased"] = "user.erased"


# --- questions and answers (social) --------------------------------------------------------------

QaText = Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class QuestionPayload(_Strict):
    question_id: Identifier
    product_id: Identifier
    #: the asker
    user_id: Identifier
    text: QaText


class QuestionAsked(Event[QuestionPayload]):
    EVENT_TYPE: ClassVar[str] = "question.asked"
    event_type: Literal["question.asked"] = "question.asked"


class AnswerPayload(_Strict):
    answer_id: Identifier
    question_id: Identifier
    product_id: Identifier
    #: who answered (anyone; answers by verified buyers of the product are marked and rank first)
    user_id: Identifier
    text: QaText


class AnswerPosted(Event[AnswerPayload]):
    EVENT_TYPE: ClassVar[str] = "answer.posted"
    event_type: Literal["answer.posted"] = "answer.posted"


class AnswerVotePayload(_Strict):
    answer_id: Identifier
    question_id: Identifier
    product_id: Identifier
    #: the voter: one vote per user and answer, the newest ``(occurred_at, event_id)`` wins
    user_id: Identifier
    helpful: bool


class AnswerVoted(Event[AnswerVotePayload]):
    EVENT_TYPE: ClassVar[str] = "answer.voted"
    event_type: Literal["answer.voted"] = "answer.voted"


class AnswerAcceptancePayload(_Strict):
    answer_id: Identifier
    question_id: Identifier
    product_id: Identifier
    #: who accepted: the asker (``user_id`` is theirs) or the shop (service token, no user)
    by: Literal["asker", "shop"]
    user_id: Identifier | None = None


class AnswerAccepted(Event[AnswerAcceptancePayload]):
    EVENT_TYPE: ClassVar[str] = "answer.accepted"
    event_type: Literal["answer.accepted"] = "answer.accepted"


class QaModerationPayload(_Strict):
    #: what is moderated: a question (with its answers) or one answer
    target: Literal["question", "answer"]
    #: the question's or the answer's id
    target_id: Identifier
    question_id: Identifier
    product_id: Identifier
    #: hidden from every read and count (true), or shown again (false); newest wins
    hidden: bool
    reason: str = Field(default="", max_length=500)


class QaModerated(Event[QaModerationPayload]):
    """The shop hid (or showed again) a question or an answer; reports from shoppers that reach
    the social service's threshold hide automatically, with ``reason`` saying so."""

    EVENT_TYPE: ClassVar[str] = "qa.moderated"
    event_type: Literal["qa.moderated"] = "qa.moderated"


# --- promotions (catalog) and rewards (stream processor) -----------------------------------------


class RewardSpec(_Strict):
    """What a reward takes off an order: a percentage of its total, or a fixed amount."""

    kind: Literal["percent", "fixed"]
    #: percent: 1..100; fixed: the amount, in ``currency``
    value: Money
    currency: CurrencyCode | None = None


class PromotionGoal(_Strict):
    #: distinct buyers (other than the sharer) who buy through the sharer's links in the period
    buyers: int = Field(ge=1, le=1000)


class PromotionFields(_Strict):
    """A share-to-unlock promotion: the sharer earns ``sharer_reward`` once ``goal.buyers``
    distinct buyers bought a product in scope through their links between ``starts_at`` and
    ``ends_at`` (event time); a buyer arriving through a link earns ``buyer_reward`` if set.
    Scope: one product, or every product of a category. ``max_rewards`` caps the sharers'
    rewards (the first to reach the goal, by event time, win)."""

    promotion_id: Identifier
    product_id: Identifier | None = None
    category: str | None = Field(default=None, min_length=1, max_length=100)
    title: str = Field(default="", max_length=200)
    sharer_reward: RewardSpec
    buyer_reward: RewardSpec | None = None
    goal: PromotionGoal
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    max_rewards: int | None = Field(default=None, ge=1, le=1_000_000)


class PromotionDefined(Event[PromotionFields]):
    """A promotion was created or changed; the newest ``(occurred_at, event_id)`` wins."""

    EVENT_TYPE: ClassVar[str] = "promotion.defined"
    event_type: Literal["promotion.defined"] = "promotion.defined"


class PromotionEndedPayload(_Strict):
    promotion_id: Identifier


class PromotionEnded(Event[PromotionEndedPayload]):
    """The shop ended a promotion early: purchases after ``occurred_at`` no longer count;
    rewards already earned stay."""

    EVENT_TYPE: ClassVar[str] = "promotion.ended"
    event_type: Literal["promotion.ended"] = "promotion.ended"


RewardRole = Literal["sharer", "buyer"]


class RewardEarnedPayload(_Strict):
    #: deterministic per promotion, role and user: the same reward however often it is earned
    reward_id: Identifier
    promotion_id: Identifier
    role: RewardRole
    #: who may redeem it
    user_id: Identifier
    coupon: CouponCode
    reward: RewardSpec
    #: distinct buyers credited to the sharer when it was earned (1 for a buyer's reward)
    buyers: int = Field(ge=0)


class RewardEarned(Event[RewardEarnedPayload]):
    """Emitted by the stream processor, its topic's only writer, once per transition (a
    reward withdrawn and then earned again is emitted again, under a new event id)."""

    EVENT_TYPE: ClassVar[str] = "promotion.reward_earned"
    event_type: Literal["promotion.reward_earned"] = "promotion.reward_earned"


class RewardWithdrawnPayload(_Strict):
    reward_id: Identifier
    promotion_id: Identifier
    role: RewardRole
    user_id: Identifier
    coupon: CouponCode
    #: refunded: purchases behind it were refunded or cancelled; erased: a user was erased;
    #: changed: the promotion changed (goal, period, cap) so it no longer holds
    reason: Literal["refunded", "erased", "changed"]


class RewardWithdrawn(Event[RewardWithdrawnPayload]):
    """A reward not yet redeemed no longer holds; a redeemed one is never withdrawn."""

    EVENT_TYPE: ClassVar[str] = "promotion.reward_withdrawn"
    event_type: Literal["promotion.reward_withdrawn"] = "promotion.reward_withdrawn"


# --- storefront interactions and experiments (notifier) ------------------------------------------

#: what a badge can show, in the widget's words: friends who bought, bought in 24 h, reviews,
#: questions answered by buyers, bought through friends' shares
BadgeElement = Literal["friends", "bought", "reviews", "answered", "via"]

#: longest attribution window an experiment may set (and the processor looks back), hours
MAX_ATTRIBUTION_WINDOW_H = 720


class BadgeInteractionPayload(_Strict):
    """One interaction of a visitor with a product's badge, reported by the widget in a beacon
    and published by the notifier (``occurred_at`` is when it happened in the browser).

    No personal data: ``visitor_id`` is pseudonymous; ``viewer_id`` is set only when the beacon
    came with the viewer's token (it lets a logged-in buyer's purchase be matched across devices,
    and an erasure remove it). In an experiment, ``variant`` is the visitor's assignment and
    ``attribution_window_s`` the experiment's window, stamped by the notifier, so the fact is
    self-contained for the processor. For the control variant (no badge) an impression means the
    badge's place was on screen."""

    visitor_id: VisitorId
    viewer_id: Identifier | None = None
    product_id: Identifier
    experiment_id: Identifier | None = None
    variant: VariantName | None = None
    attribution_window_s: int | None = Field(
        default=None, ge=3600, le=MAX_ATTRIBUTION_WINDOW_H * 3600
    )


class BadgeViewed(Event[BadgeInteractionPayload]):
    """A badge (or, for a control visitor, its empty place) was visible on screen."""

    EVENT_TYPE: ClassVar[str] = "badge.viewed"
    event_type: Literal["badge.viewed"] = "badge.viewed"


class BadgeClicked(Event[BadgeInteractionPayload]):
    EVENT_TYPE: ClassVar[str] = "badge.clicked"
    event_type: Literal["badge.clicked"] = "badge.clicked"


class BadgeDismissed(Event[BadgeInteractionPayload]):
    EVENT_TYPE: ClassVar[str] = "badge.dismissed"
    event_type: Literal["badge.dismissed"] = "badge.dismissed"


class ExperimentVariant(_Strict):
    """What one variant shows: no badge (``badge: none``, a control), or the badge with these
    elements in this order (absent: the widget's default) and this count threshold."""

    name: VariantName
    badge: Literal["show", "none"] = "show"
    elements: list[BadgeElement] | None = Field(default=None, min_length=1, max_length=5)
    min_count: int | None = Field(default=None, ge=1, le=1_000_000)


class ExperimentFields(_Strict):
    """An A/B experiment on badges. The first variant is the control the others are compared
    with. A visitor's variant is a hash of (experiment, visitor) into ``split`` (percentages), so
    every notifier process agrees and a visitor keeps theirs. Scope: listed products, or every
    product of a category. A definition never changes once started (changing a split mid-way
    biases the comparison): a new design is a new experiment."""

    experiment_id: Identifier
    title: str = Field(default="", max_length=200)
    products: list[Identifier] | None = Field(default=None, min_length=1, max_length=1000)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    variants: list[ExperimentVariant] = Field(min_length=2, max_length=6)
    split: list[int] = Field(min_length=2, max_length=6)
    attribution_window_h: int = Field(default=24, ge=1, le=MAX_ATTRIBUTION_WINDOW_H)
    #: the smallest relative uplift worth detecting; sets the sample a verdict needs
    minimum_detectable_effect: float = Field(default=0.2, gt=0, le=10)
    starts_at: UtcDatetime


class ExperimentStarted(Event[ExperimentFields]):
    EVENT_TYPE: ClassVar[str] = "experiment.started"
    event_type: Literal["experiment.started"] = "experiment.started"


class ExperimentStoppedPayload(_Strict):
    experiment_id: Identifier


class ExperimentStopped(Event[ExperimentStoppedPayload]):
    """The shop stopped the experiment: no more assignments or experiment impressions; purchases
    within the window of earlier impressions still count."""

    EVENT_TYPE: ClassVar[str] = "experiment.stopped"
    event_type: Literal["experiment.stopped"] = "experiment.stopped"


#: every event type by wire name; the one place a new event is registered
EVENT_TYPES: dict[str, type[Event]] = {
    cls.EVENT_TYPE: cls
    for cls in (
        ProductUpserted,
        ProductDeleted,
        PurchaseCompleted,
        OrderRefunded,
        OrderCancelled,
        ReviewPosted,
        ReviewEdited,
        ReviewDeleted,
        ProductShared,
        FriendshipAdded,
        FriendshipRemoved,
        PrivacySettingsChanged,
        UserProfileUpdated,
        UserErased,
        QuestionAsked,
        AnswerPosted,
        AnswerVoted,
        AnswerAccepted,
        QaModerated,
        PromotionDefined,
        PromotionEnded,
        RewardEarned,
        RewardWithdrawn,
        BadgeViewed,
        BadgeClicked,
        BadgeDismissed,
        ExperimentStarted,
        ExperimentStopped,
    )
}
