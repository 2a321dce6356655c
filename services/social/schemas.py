"""The social service's requests and answers: the JSON bodies of :mod:`services.social.api`, with
their validation (pydantic), the path parameters, and the examples and error responses its OpenAPI
document shows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Identifier, ShareChannel
from services.social.graph import ReviewState
from socialproof.http import ErrorBody

UserId = Annotated[Identifier, Path(description="user id", examples=["u-ana"])]
FriendId = Annotated[Identifier, Path(description="the other user's id", examples=["u-ben"])]
ProductId = Annotated[Identifier, Path(description="product id", examples=["cup-espresso"])]
ReviewId = Annotated[Identifier, Path(description="review id", examples=["rv-5d1e"])]
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


class Privacy(PrivacyIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u-ana",
                    "share_purchases_with_friends": True,
                    "show_in_activity_feed": False,
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
