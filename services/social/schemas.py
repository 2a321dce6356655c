"""The social service's requests and answers: the JSON bodies of :mod:`services.social.api`, with
their validation (pydantic), the path parameters, and the examples and error responses its OpenAPI
document shows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts.events import Identifier, QaText, ShareChannel
from services.social.graph import ReviewState
from services.social.qa import AnswerState, QuestionState
from socialproof.http import ErrorBody

UserId = Annotated[Identifier, Path(description="user id", examples=["u-ana"])]
FriendId = Annotated[Identifier, Path(description="the other user's id", examples=["u-ben"])]
ProductId = Annotated[Identifier, Path(description="product id", examples=["cup-espresso"])]
ReviewId = Annotated[Identifier, Path(description="review id", examples=["rv-5d1e"])]
QuestionId = Annotated[Identifier, Path(description="question id", examples=["q-8c2f"])]
AnswerId = Annotated[Identifier, Path(description="answer id", examples=["a-41b9"])]
Rating = Annotated[int, Field(ge=1, le=5, description="stars, 1 to 5", examples=[5])]
ReviewText = Annotated[str, Field(max_length=5000, examples=["Lovely cup, keeps it hot."])]
FirstName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^\S(.*\S)?$",
        description='the only name ever shown ("Ana bought this"); never a full name',
        examples=["Ana"],
    ),
]

ERASED = {409: {"model": ErrorBody, "description": "the user was erased"}}
NOT_FOUND_REVIEW = {404: {"model": ErrorBody, "description": "no such review"}}
NOT_FOUND_QUESTION = {404: {"model": ErrorBody, "description": "no such question, or hidden"}}
NOT_FOUND_ANSWER = {
    404: {"model": ErrorBody, "description": "no such answer, or it or its question is hidden"}
}
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "the user posted `SOCIALPROOF_QA_POSTS_PER_HOUR` questions and answers "
        "in the last hour; retry after `Retry-After` s",
        "headers": {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        },
    }
}
SHARE_RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "the user created `SOCIALPROOF_SHARE_LINKS_PER_HOUR` shares (referral "
        "links) in the last hour; retry after `Retry-After` s",
        "headers": {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        },
    }
}
#: reads that mark verified buyers answer 503 rather than guess when Redis does not answer
UNVERIFIABLE = {
    503: {
        "model": ErrorBody,
        "description": "the serving store (verified purchases) is unavailable; retry after the "
        "delay",
    }
}


# --- models -------------------------------------------------------------------------------------


class Friendship(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": "u-ana", "friend_id": "u-ben", "friends": True}]
        }
    )

    user_id: str
    friend_id: str
    friends: bool = Field(description="true after PUT, false after DELETE")


class Friend(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": "u-ben", "first_name": "Ben"}]}
    )

    user_id: str
    first_name: str | None = Field(description="from the user's profile, if they set one")


class ReviewIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user_id": "u-ana", "product_id": "cup-espresso", "rating": 5, "text": "Lovely."}
            ]
        },
    )
    user_id: Identifier
    product_id: Identifier
    rating: Rating
    text: ReviewText = ""


class ReviewEdit(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"rating": 4, "text": "Chipped a bit."}]}
    )
    rating: Rating
    text: ReviewText = ""


class Review(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "review_id": "rv-5d1e",
                    "user_id": "u-ana",
                    "product_id": "cup-espresso",
                    "rating": 5,
                    "text": "Lovely cup, keeps it hot.",
                    "created_at": "2026-11-24T10:00:00Z",
                    "updated_at": "2026-11-24T10:05:00Z",
                }
            ]
        }
    )

    review_id: str
    user_id: str
    product_id: str
    rating: int
    text: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: ReviewState) -> Review:
        return cls(**r.__dict__)


class ListedReview(Review):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "review_id": "rv-5d1e",
                    "user_id": "u-ana",
                    "product_id": "cup-espresso",
                    "rating": 5,
                    "text": "Lovely cup, keeps it hot.",
                    "created_at": "2026-11-24T10:00:00Z",
                    "updated_at": "2026-11-24T10:05:00Z",
                    "verified": True,
                }
            ]
        }
    )

    verified: bool = Field(description="the author has a kept purchase of the product")

    @classmethod
    def of_verified(cls, r: ReviewState, verified: bool) -> ListedReview:
        return cls(**r.__dict__, verified=verified)


class ShareIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"user_id": "u-ana", "product_id": "cup-espresso", "channel": "whatsapp"}]
        },
    )
    user_id: Identifier
    product_id: Identifier
    channel: ShareChannel


class Share(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "share_id": "s-77aa",
                    "user_id": "u-ana",
                    "product_id": "cup-espresso",
                    "channel": "whatsapp",
                    "link_token": "lk-k7q2m5x3vd4ra6hn2tb7wczp4e",
                    "link": "https://shop.example/products/cup-espresso"
                    "?ref=lk-k7q2m5x3vd4ra6hn2tb7wczp4e",
                    "event_id": "9e3c1b7a-2f4d-4e8a-b1c2-d3e4f5a6b7c8",
                    "occurred_at": "2026-11-24T10:00:00Z",
                }
            ]
        }
    )

    share_id: str
    user_id: str
    product_id: str
    channel: str
    link_token: str = Field(
        description="this share's referral token (`lk-` and 26 base32 characters, 130 random "
        'bits): a friend\'s order carries it as `"referral"` and the stream processor credits '
        "the sharer"
    )
    link: str = Field(
        description="the storefront page to send (`SOCIALPROOF_STOREFRONT_URL`) with "
        "`?ref=<link_token>`"
    )
    event_id: uuid.UUID
    occurred_at: datetime


class PrivacyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"share_purchases_with_friends": True, "show_in_activity_feed": True}]
        },
    )
    share_purchases_with_friends: bool = Field(description="friends may see what I bought")
    show_in_activity_feed: bool = Field(description="my first name may appear in activity feeds")
    notify_on_questions: bool = Field(
        default=False,
        strict=True,
        description="a live note when a shopper asks about a product I bought (omitted: no)",
    )


class Privacy(PrivacyIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u-ana",
                    "share_purchases_with_friends": True,
                    "show_in_activity_feed": False,
                    "notify_on_questions": False,
                    "chosen": True,
                }
            ]
        }
    )
    user_id: str
    chosen: bool = Field(description="false: the shop's defaults apply (the user never chose)")


class ProfileIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"first_name": "Ana"}]}
    )
    first_name: FirstName


class Profile(ProfileIn):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": "u-ana", "first_name": "Ana"}]}
    )

    user_id: str


class Erased(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": "u-ana", "erased": True}]}
    )

    user_id: str
    erased: bool = True


# --- questions and answers ----------------------------------------------------------------------

ReportReason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500, strip_whitespace=True),
    Field(description="why the content should go, for the shop", examples=["spam"]),
]


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Identifier = Field(description="who asks or answers")
    text: QaText = Field(description="1 to 2000 characters (surrounding blanks removed)")


class QuestionIn(PostIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": "u-ana", "text": "Does it fit a standard saucer?"}]
        }
    )


class AnswerIn(PostIn):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": "u-ben", "text": "Yes, any 12 cm saucer."}]}
    )


class Question(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "question_id": "q-8c2f",
                    "product_id": "cup-espresso",
                    "user_id": "u-ana",
                    "text": "Does it fit a standard saucer?",
                    "created_at": "2026-11-24T10:00:00Z",
                }
            ]
        }
    )

    question_id: str
    product_id: str
    user_id: str = Field(description="the asker")
    text: str
    created_at: datetime

    @classmethod
    def of(cls, q: QuestionState) -> Question:
        return cls(
            question_id=q.question_id,
            product_id=q.product_id,
            user_id=q.user_id,
            text=q.text,
            created_at=q.created_at,
        )


class Answer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "answer_id": "a-41b9",
                    "question_id": "q-8c2f",
                    "product_id": "cup-espresso",
                    "user_id": "u-ben",
                    "text": "Yes, any 12 cm saucer.",
                    "created_at": "2026-11-24T10:03:00Z",
                }
            ]
        }
    )

    answer_id: str
    question_id: str
    product_id: str
    user_id: str
    text: str
    created_at: datetime


class ListedAnswer(Answer):
    verified: bool = Field(description="the author has a kept purchase of the product")
    helpful: int = Field(description="how many users found it helpful")
    accepted: bool = Field(description="the asker or the shop accepted it")

    @classmethod
    def of(cls, a: AnswerState, verified: bool) -> ListedAnswer:
        return cls(
            answer_id=a.answer_id,
            question_id=a.question_id,
            product_id=a.product_id,
            user_id=a.user_id,
            text=a.text,
            created_at=a.created_at,
            verified=verified,
            helpful=a.helpful,
            accepted=a.accepted,
        )


class ListedQuestion(Question):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "question_id": "q-8c2f",
                    "product_id": "cup-espresso",
                    "user_id": "u-ana",
                    "text": "Does it fit a standard saucer?",
                    "created_at": "2026-11-24T10:00:00Z",
                    "answers": [
                        {
                            "answer_id": "a-41b9",
                            "question_id": "q-8c2f",
                            "product_id": "cup-espresso",
                            "user_id": "u-ben",
                            "text": "Yes, any 12 cm saucer.",
                            "created_at": "2026-11-24T10:03:00Z",
                            "verified": True,
                            "helpful": 3,
                            "accepted": True,
                        }
                    ],
                }
            ]
        }
    )

    answers: list[ListedAnswer] = Field(
        description="visible answers: verified buyers' first, then accepted ones, then by "
        "helpful votes, then oldest first"
    )


class VoteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"user_id": "u-cem", "helpful": True}]}
    )
    user_id: Identifier = Field(description="the voter (one vote per user: voting again replaces)")
    helpful: bool = Field(strict=True, description="true: helpful; false: not helpful")


class Vote(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "answer_id": "a-41b9",
                    "question_id": "q-8c2f",
                    "user_id": "u-cem",
                    "helpful": True,
                    "helpful_votes": 3,
                }
            ]
        }
    )

    answer_id: str
    question_id: str
    user_id: str
    helpful: bool = Field(description="this user's vote")
    helpful_votes: int = Field(description="the answer's helpful votes now")


class AcceptIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"by": "asker", "user_id": "u-ana"}, {"by": "shop"}],
        },
    )
    by: Literal["asker", "shop"] = Field(description="the question's asker, or the shop")
    user_id: Identifier | None = Field(
        default=None, description="with `by: asker` only: the asker's id (anyone else: 403)"
    )


class Acceptance(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"answer_id": "a-41b9", "question_id": "q-8c2f", "accepted": True}]
        }
    )

    answer_id: str
    question_id: str
    accepted: bool = True


class ReportIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_id": "u-dan", "reason": "spam"}]},
    )
    user_id: Identifier = Field(description="the reporter (one report per user)")
    reason: ReportReason


class Report(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "target": "answer",
                    "target_id": "a-41b9",
                    "user_id": "u-dan",
                    "reports": 3,
                    "hidden": True,
                }
            ]
        }
    )

    target: Literal["question", "answer"]
    target_id: str
    user_id: str
    reports: int = Field(description="distinct users who reported it")
    hidden: bool = Field(description="hidden now (reports reached the threshold, or the shop)")


class ModerationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "off topic"}]}
    )
    reason: str = Field(default="", max_length=500, description='why (empty: "shop")')


class Moderation(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "target": "question",
                    "target_id": "q-8c2f",
                    "question_id": "q-8c2f",
                    "hidden": True,
                }
            ]
        }
    )

    target: Literal["question", "answer"]
    target_id: str
    question_id: str
    hidden: bool
