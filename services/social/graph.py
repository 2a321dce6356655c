"""The social service's view: friendships, reviews, privacy choices, first names, erasures, and
questions and answers (:mod:`services.social.qa`, on :attr:`SocialGraph.qa`).

Rebuilt on every start by replaying the service's own topics (``social.friendships``,
``social.reviews``, ``social.users``, ``social.questions``) from the beginning (see
:mod:`socialproof.topicview`). Applying is idempotent: repeated adds/removes and re-delivered
events change nothing.

Erasure: once ``user.erased`` is applied the user's friendships (both directions), reviews,
privacy choices, first name, questions (with their answers), answers and votes are gone from the
view, and later events about them are ignored, as the stream processor does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts import codec
from contracts.events import (
    FriendshipAdded,
    FriendshipRemoved,
    PrivacySettingsChanged,
    ReviewDeleted,
    ReviewEdited,
    ReviewPosted,
    UserErased,
    UserProfileUpdated,
)
from contracts.topics import FRIENDSHIPS, QUESTIONS, REVIEWS, USERS
from services.social.qa import QaBoard
from socialproof.topicview import Record


@dataclass
class ReviewState:
    review_id: str
    user_id: str
    product_id: str
    rating: int
    text: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Privacy:
    share_purchases_with_friends: bool
    show_in_activity_feed: bool
    notify_on_questions: bool = False


class SocialGraph:
    topics = (FRIENDSHIPS, REVIEWS, USERS, QUESTIONS)

    def __init__(self) -> None:
        self.friends: dict[str, set[str]] = {}
        self.reviews: dict[str, ReviewState] = {}
        self.review_of: dict[tuple[str, str], str] = {}  # (user, product) -> review_id
        self.product_reviews: dict[str, set[str]] = {}
        self.privacy: dict[str, Privacy] = {}
        self.first_names: dict[str, str] = {}
        self.erased: set[str] = set()
        self.qa = QaBoard()

    # --- reads ----------------------------------------------------------------------------------

    def are_friends(self, a: str, b: str) -> bool:
        return b in self.friends.get(a, ())

    def friends_of(self, user_id: str) -> list[str]:
        return sorted(self.friends.get(user_id, ()))

    def review_by(self, user_id: str, product_id: str) -> ReviewState | None:
        review_id = self.review_of.get((user_id, product_id))
        return None if review_id is None else self.reviews.get(review_id)

    def reviews_of_product(self, product_id: str) -> list[ReviewState]:
        ids = sorted(self.product_reviews.get(product_id, ()))
        return [self.reviews[i] for i in ids]

    # --- applying events ------------------------------------------------------------------------

    def apply(self, record: Record) -> None:
        if record.value is None:
            return
        event = codec.decode(record.value)
        p = event.payload
        if isinstance(event, UserErased):
            self._erase(p.user_id)
            return
        if (
            getattr(p, "user_id", None) in self.erased
            or getattr(p, "friend_id", None) in self.erased
        ):
            return
        if isinstance(event, FriendshipAdded) and p.user_id != p.friend_id:
            self.friends.setdefault(p.user_id, set()).add(p.friend_id)
            self.friends.setdefault(p.friend_id, set()).add(p.user_id)
        elif isinstance(event, FriendshipRemoved):
            self._unfriend(p.user_id, p.friend_id)
        elif isinstance(event, ReviewPosted | ReviewEdited):
            previous = self.review_by(p.user_id, p.product_id)
            if previous is not None and previous.review_id != p.review_id:
                self._drop_review(previous.review_id)  # one review per user and product
                previous = None
            current = self.reviews.get(p.review_id) or previous
            self.reviews[p.review_id] = ReviewState(
                review_id=p.review_id,
                user_id=p.user_id,
                product_id=p.product_id,
                rating=p.rating,
                text=p.text,
                created_at=current.created_at if current else event.occurred_at,
                updated_at=event.occurred_at,
            )
            self.review_of[(p.user_id, p.product_id)] = p.review_id
            self.product_reviews.setdefault(p.product_id, set()).add(p.review_id)
        elif isinstance(event, ReviewDeleted):
            self._drop_review(p.review_id)
        elif isinstance(event, PrivacySettingsChanged):
            self.privacy[p.user_id] = Privacy(
                p.share_purchases_with_friends,
                p.show_in_activity_feed,
                bool(p.notify_on_questions),  # absent (an older producer): no
            )
        elif isinstance(event, UserProfileUpdated):
            self.first_names[p.user_id] = p.first_name
        elif QUESTIONS.accepts(event):
            self.qa.apply(event)

    def _unfriend(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            peers = self.friends.get(x)
            if peers is not None:
                peers.discard(y)
                if not peers:
                    del self.friends[x]

    def _drop_review(self, review_id: str) -> None:
        review = self.reviews.pop(review_id, None)
        if review is None:
            return
        if self.review_of.get((review.user_id, review.product_id)) == review_id:
            del self.review_of[(review.user_id, review.product_id)]
        ids = self.product_reviews.get(review.product_id)
        if ids is not None:
            ids.discard(review_id)
            if not ids:
                del self.product_reviews[review.product_id]

    def _erase(self, user_id: str) -> None:
        self.erased.add(user_id)
        for friend in list(self.friends.get(user_id, ())):
            self._unfriend(user_id, friend)
        for review_id in [r.review_id for r in self.reviews.values() if r.user_id == user_id]:
            self._drop_review(review_id)
        self.privacy.pop(user_id, None)
        self.first_names.pop(user_id, None)
        self.qa.erase(user_id)
