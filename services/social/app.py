"""The social service's HTTP API: friendships, reviews, shares, privacy, first names, erasure.

It is the only writer of ``social.friendships``, ``social.reviews``, ``social.shares`` and
``social.users``. Its view (:mod:`services.social.graph`) is rebuilt on every start by replaying
those topics (``/readyz`` is 503 until it caught up); each write answers once the broker
acknowledged the event and the view applied it, so the next read sees it.

- Friendships are symmetric; repeating a PUT or DELETE publishes nothing and answers the same.
- One review per user and product: posting again edits it (same ``review_id``).
- Shares accept ``Idempotency-Key`` (:mod:`socialproof.idempotency`) so a retry is not a 2nd share.
- Privacy by default: users who never chose get ``SOCIALPROOF_DEFAULT_SHARE_PURCHASES`` and
  ``SOCIALPROOF_DEFAULT_SHOW_IN_ACTIVITY_FEED`` (both false unless the shop configures otherwise).
- ``DELETE /v1/users/{id}`` emits ``user.erased``; the view forgets the user and refuses further
  writes about them (409 ``user_erased``); the stream processor drops them from every counter.

Every write needs the service token; so do reads of personal data (friends, privacy, profile).

Run: ``socialproof serve social`` (port ``SOCIALPROOF_SOCIAL_PORT``, default 8003). The stream
processor that turns events into counters is :mod:`services.counters`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Event as ContractEvent
from contracts.events import (
    FriendshipAdded,
    FriendshipPayload,
    FriendshipRemoved,
    Identifier,
    PrivacySettingsChanged,
    PrivacySettingsPayload,
    ProductShared,
    ProductSharedPayload,
    ReviewDeleted,
    ReviewEdited,
    ReviewPayload,
    ReviewPosted,
    ReviewRef,
    ShareChannel,
    UserErased,
    UserProfilePayload,
    UserProfileUpdated,
    UserRef,
)
from services.social.graph import ReviewState, SocialGraph
from services.social.settings import SocialSettings
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    FieldError,
    ServiceAuth,
    create_service_app,
)
from socialproof.idempotency import DEFAULT_TTL_S, Idempotency, IdempotencyKey
from socialproof.paging import Cursor, Limit, Page, paginate
from socialproof.topicview import TopicView, lifespan_with_view, view_readiness

SERVICE = "social"
log = logging.getLogger("socialproof.social")

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


# --- the app ------------------------------------------------------------------------------------


def create_app(settings: SocialSettings | None = None) -> FastAPI:
    settings = settings or SocialSettings()
    graph = SocialGraph()
    # Writes check the view, then publish: one at a time per process so checks stay true.
    write_lock = asyncio.Lock()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description=(
            "Friendships, reviews, shares, privacy settings, first names and erasure. Writes need "
            "the service token and answer once the broker confirmed the event."
        ),
        lifespan=lifespan_with_view(
            settings,
            SERVICE,
            lambda _: TopicView(settings, graph.topics, graph.apply, name=SERVICE),
        ),
        readiness=view_readiness,
    )

    async def emit(request: Request, event: ContractEvent) -> None:
        delivered = await request.app.state.publisher.publish(event)
        log.info(event.event_type, extra={"event_id": str(event.event_id)})
        await request.app.state.view.wait_delivered(delivered)

    def not_erased(**users: str) -> None:
        for field, user_id in users.items():
            if user_id in graph.erased:
                raise ApiError(
                    409,
                    "user_erased",
                    f"user {user_id} was erased",
                    fields=[FieldError(field=field, message="erased user", type="user_erased")],
                )

    def privacy_of(user_id: str) -> Privacy:
        chosen = graph.privacy.get(user_id)
        return Privacy(
            user_id=user_id,
            share_purchases_with_friends=chosen.share_purchases_with_friends
            if chosen
            else settings.default_share_purchases,
            show_in_activity_feed=chosen.show_in_activity_feed
            if chosen
            else settings.default_show_in_activity_feed,
            chosen=chosen is not None,
        )

    # --- friendships ----------------------------------------------------------------------------

    @app.put(
        "/v1/users/{user_id}/friends/{friend_id}",
        response_model=Friendship,
        tags=["friendships"],
        summary="Befriend two users (symmetric); repeating is harmless",
        responses={**ERASED, **AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def befriend(
        user_id: UserId, friend_id: FriendId, request: Request, _: ServiceAuth
    ) -> Friendship:
        if user_id == friend_id:
            raise ApiError(
                422,
                "validation_failed",
                "a user cannot befriend themselves",
                fields=[
                    FieldError(field="friend_id", message="equals user_id", type="self_friendship")
                ],
            )
        async with write_lock:
            not_erased(user_id=user_id, friend_id=friend_id)
            if not graph.are_friends(user_id, friend_id):
                payload = FriendshipPayload(user_id=user_id, friend_id=friend_id)
                await emit(request, FriendshipAdded.create(payload, producer=SERVICE))
        return Friendship(user_id=user_id, friend_id=friend_id, friends=True)

    @app.delete(
        "/v1/users/{user_id}/friends/{friend_id}",
        response_model=Friendship,
        tags=["friendships"],
        summary="End a friendship (both directions); repeating is harmless",
        responses={**AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
    )
    async def unfriend(
        user_id: UserId, friend_id: FriendId, request: Request, _: ServiceAuth
    ) -> Friendship:
        async with write_lock:
            if graph.are_friends(user_id, friend_id):
                payload = FriendshipPayload(user_id=user_id, friend_id=friend_id)
                await emit(request, FriendshipRemoved.create(payload, producer=SERVICE))
        return Friendship(user_id=user_id, friend_id=friend_id, friends=False)

    @app.get(
        "/v1/users/{user_id}/friends",
        response_model=Page[Friend],
        tags=["friendships"],
        summary="A user's friends with their first names, by id, page by page",
        responses=AUTH_RESPONSES,
    )
    async def list_friends(
        user_id: UserId, _: ServiceAuth, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[Friend]:
        page, next_cursor = paginate(graph.friends_of(user_id), lambda f: f, cursor, limit)
        return Page[Friend](
            items=[Friend(user_id=f, first_name=graph.first_names.get(f)) for f in page],
            next_cursor=next_cursor,
        )

    # --- reviews --------------------------------------------------------------------------------

    @app.post(
        "/v1/reviews",
        status_code=201,
        response_model=Review,
        tags=["reviews"],
        summary="Post a review; a user's second review of a product edits the first",
        responses={
            200: {"model": Review, "description": "the user had reviewed the product: edited"},
            **ERASED,
            **AUTH_RESPONSES,
            **ERROR_RESPONSES,
        },
    )
    async def post_review(body: ReviewIn, request: Request, _: ServiceAuth) -> JSONResponse:
        async with write_lock:
            not_erased(user_id=body.user_id)
            previous = graph.review_by(body.user_id, body.product_id)
            review_id = previous.review_id if previous else f"rv-{uuid.uuid4().hex}"
            payload = ReviewPayload(review_id=review_id, **body.model_dump())
            event_type = ReviewEdited if previous else ReviewPosted
            await emit(request, event_type.create(payload, producer=SERVICE))
            review = Review.of(graph.reviews[review_id])
        return JSONResponse(review.model_dump(mode="json"), status_code=200 if previous else 201)

    def existing_review(review_id: str) -> ReviewState:
        review = graph.reviews.get(review_id)
        if review is None:
            raise ApiError(404, "not_found", f"no review {review_id}")
        return review

    @app.get(
        "/v1/reviews/{review_id}",
        response_model=Review,
        tags=["reviews"],
        summary="Read a review",
        responses=NOT_FOUND_REVIEW,
    )
    async def get_review(review_id: ReviewId) -> Review:
        return Review.of(existing_review(review_id))

    @app.put(
        "/v1/reviews/{review_id}",
        response_model=Review,
        tags=["reviews"],
        summary="Edit a review's rating and text",
        responses={**NOT_FOUND_REVIEW, **AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def edit_review(
        review_id: ReviewId, body: ReviewEdit, request: Request, _: ServiceAuth
    ) -> Review:
        async with write_lock:
            current = existing_review(review_id)
            if (current.rating, current.text) != (body.rating, body.text):
                payload = ReviewPayload(
                    review_id=review_id,
                    user_id=current.user_id,
                    product_id=current.product_id,
                    rating=body.rating,
                    text=body.text,
                )
                await emit(request, ReviewEdited.create(payload, producer=SERVICE))
            return Review.of(existing_review(review_id))

    @app.delete(
        "/v1/reviews/{review_id}",
        status_code=204,
        tags=["reviews"],
        summary="Delete a review",
        responses={**NOT_FOUND_REVIEW, **AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
    )
    async def delete_review(review_id: ReviewId, request: Request, _: ServiceAuth) -> Response:
        async with write_lock:
            current = existing_review(review_id)
            ref = ReviewRef(
                review_id=review_id, user_id=current.user_id, product_id=current.product_id
            )
            await emit(request, ReviewDeleted.create(ref, producer=SERVICE))
        return Response(status_code=204)

    @app.get(
        "/v1/products/{product_id}/reviews",
        response_model=Page[Review],
        tags=["reviews"],
        summary="A product's reviews, by review id, page by page",
    )
    async def product_reviews(
        product_id: ProductId, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[Review]:
        reviews = graph.reviews_of_product(product_id)
        page, next_cursor = paginate(reviews, lambda r: r.review_id, cursor, limit)
        return Page[Review](items=[Review.of(r) for r in page], next_cursor=next_cursor)

    # --- shares ---------------------------------------------------------------------------------

    @app.post(
        "/v1/shares",
        status_code=201,
        response_model=Share,
        tags=["shares"],
        summary="Record that a user shared a product on a channel",
        responses={
            409: {"model": ErrorBody, "description": "erased user, or Idempotency-Key reused"},
            **AUTH_RESPONSES,
            **ERROR_RESPONSES,
        },
    )
    async def share(
        body: ShareIn, request: Request, _: ServiceAuth, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        not_erased(user_id=body.user_id)
        idem = Idempotency(
            request.app.state.redis, settings.redis_namespace, "shares", DEFAULT_TTL_S
        )
        fingerprint = Idempotency.fingerprint(body.model_dump(mode="json"))
        if idempotency_key and (replay := await idem.lookup(idempotency_key, fingerprint)):
            return replay.response()
        ids: dict[str, Any] = {
            "share_id": f"s-{uuid.uuid4().hex}",
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        if idempotency_key:
            ids = await idem.reserve(idempotency_key, fingerprint, ids)
        event = ProductShared.create(
            ProductSharedPayload(share_id=ids["share_id"], **body.model_dump()),
            producer=SERVICE,
            event_id=uuid.UUID(ids["event_id"]),
            occurred_at=datetime.fromisoformat(ids["occurred_at"]),
        )
        # shares are not part of the view: the broker's acknowledgement is all there is to wait for
        await request.app.state.publisher.publish(event)
        log.info(event.event_type, extra={"event_id": str(event.event_id)})
        answer = Share(
            **event.payload.model_dump(), event_id=event.event_id, occurred_at=event.occurred_at
        ).model_dump(mode="json")
        if idempotency_key:
            await idem.complete(idempotency_key, fingerprint, ids, status=201, body=answer)
        return JSONResponse(answer, status_code=201)

    # --- users: privacy, profile, erasure -------------------------------------------------------

    @app.get(
        "/v1/users/{user_id}/privacy",
        response_model=Privacy,
        tags=["users"],
        summary="A user's privacy choices (the shop's defaults until they choose)",
        responses=AUTH_RESPONSES,
    )
    async def get_privacy(user_id: UserId, _: ServiceAuth) -> Privacy:
        return privacy_of(user_id)

    @app.put(
        "/v1/users/{user_id}/privacy",
        response_model=Privacy,
        tags=["users"],
        summary="Set a user's privacy choices",
        responses={**ERASED, **AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def set_privacy(
        user_id: UserId, body: PrivacyIn, request: Request, _: ServiceAuth
    ) -> Privacy:
        async with write_lock:
            not_erased(user_id=user_id)
            current = privacy_of(user_id)
            if not current.chosen or (
                current.share_purchases_with_friends,
                current.show_in_activity_feed,
            ) != (body.share_purchases_with_friends, body.show_in_activity_feed):
                payload = PrivacySettingsPayload(user_id=user_id, **body.model_dump())
                await emit(request, PrivacySettingsChanged.create(payload, producer=SERVICE))
            return privacy_of(user_id)

    @app.get(
        "/v1/users/{user_id}/profile",
        response_model=Profile,
        tags=["users"],
        summary="A user's first name",
        responses={404: {"model": ErrorBody, "description": "no profile"}, **AUTH_RESPONSES},
    )
    async def get_profile(user_id: UserId, _: ServiceAuth) -> Profile:
        first_name = graph.first_names.get(user_id)
        if first_name is None:
            raise ApiError(404, "not_found", f"user {user_id} has no profile")
        return Profile(user_id=user_id, first_name=first_name)

    @app.put(
        "/v1/users/{user_id}/profile",
        response_model=Profile,
        tags=["users"],
        summary="Set the first name shown in friend lists and activity feeds",
        responses={**ERASED, **AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def set_profile(
        user_id: UserId, body: ProfileIn, request: Request, _: ServiceAuth
    ) -> Profile:
        async with write_lock:
            not_erased(user_id=user_id)
            if graph.first_names.get(user_id) != body.first_name:
                payload = UserProfilePayload(user_id=user_id, first_name=body.first_name)
                await emit(request, UserProfileUpdated.create(payload, producer=SERVICE))
        return Profile(user_id=user_id, first_name=body.first_name)

    @app.delete(
        "/v1/users/{user_id}",
        response_model=Erased,
        tags=["users"],
        summary="Erase a user: friendships, reviews, privacy, name and every counter drop them",
        responses={**AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
    )
    async def erase_user(user_id: UserId, request: Request, _: ServiceAuth) -> Erased:
        async with write_lock:
            if user_id not in graph.erased:
                await emit(request, UserErased.create(UserRef(user_id=user_id), producer=SERVICE))
        return Erased(user_id=user_id)

    return app
