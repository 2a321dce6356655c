"""Friendships: befriend (``friendship.added``), unfriend (``friendship.removed``), list a user's
friends. Friendships are symmetric; repeating a PUT or DELETE publishes nothing and answers the
same."""

from __future__ import annotations

from fastapi import APIRouter

from contracts.events import FriendshipAdded, FriendshipPayload, FriendshipRemoved
from services.social.api.deps import SERVICE, Emit, Graph, not_erased
from services.social.schemas import ERASED, Friend, FriendId, Friendship, UserId
from socialproof.deps import WriteLock
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, FieldError, ServiceAuth
from socialproof.paging import Cursor, Limit, Page, paginate

router = APIRouter(tags=["friendships"])


@router.put(
    "/v1/users/{user_id}/friends/{friend_id}",
    response_model=Friendship,
    summary="Befriend two users (symmetric); repeating is harmless",
    responses={**ERASED, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def befriend(
    user_id: UserId,
    friend_id: FriendId,
    _: ServiceAuth,
    graph: Graph,
    lock: WriteLock,
    emit: Emit,
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
    async with lock:
        not_erased(graph, user_id=user_id, friend_id=friend_id)
        if not graph.are_friends(user_id, friend_id):
            payload = FriendshipPayload(user_id=user_id, friend_id=friend_id)
            await emit(FriendshipAdded.create(payload, producer=SERVICE))
    return Friendship(user_id=user_id, friend_id=friend_id, friends=True)


@router.delete(
    "/v1/users/{user_id}/friends/{friend_id}",
    response_model=Friendship,
    summary="End a friendship (both directions); repeating is harmless",
    responses={**AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
)
async def unfriend(
    user_id: UserId,
    friend_id: FriendId,
    _: ServiceAuth,
    graph: Graph,
    lock: WriteLock,
    emit: Emit,
) -> Friendship:
    async with lock:
        if graph.are_friends(user_id, friend_id):
            payload = FriendshipPayload(user_id=user_id, friend_id=friend_id)
            await emit(FriendshipRemoved.create(payload, producer=SERVICE))
    return Friendship(user_id=user_id, friend_id=friend_id, friends=False)


@router.get(
    "/v1/users/{user_id}/friends",
    response_model=Page[Friend],
    summary="A user's friends with their first names, by id, page by page",
    responses=AUTH_RESPONSES,
)
async def list_friends(
    user_id: UserId, _: ServiceAuth, graph: Graph, limit: Limit = 20, cursor: Cursor = None
) -> Page[Friend]:
    page, next_cursor = paginate(graph.friends_of(user_id), lambda f: f, cursor, limit)
    return Page[Friend](
        items=[Friend(user_id=f, first_name=graph.first_names.get(f)) for f in page],
        next_cursor=next_cursor,
    )
