"""A user's profile (the first name shown in friend lists and activity feeds,
``user.profile_updated``) and erasure (``user.erased``: the graph forgets the user, their
questions, answers and votes, and refuses further writes about them; their reports of questions
and answers are deleted from Redis; the stream processor drops them from every counter)."""

from __future__ import annotations

from fastapi import APIRouter

from contracts.events import UserErased, UserProfilePayload, UserProfileUpdated, UserRef
from services.social.api.deps import SERVICE, Emit, Graph, Store, not_erased
from services.social.schemas import ERASED, Erased, Profile, ProfileIn, UserId
from socialproof.deps import WriteLock
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, ErrorBody, ServiceAuth

router = APIRouter(tags=["users"])


@router.get(
    "/v1/users/{user_id}/profile",
    response_model=Profile,
    summary="A user's first name",
    responses={404: {"model": ErrorBody, "description": "no profile"}, **AUTH_RESPONSES},
)
async def get_profile(user_id: UserId, _: ServiceAuth, graph: Graph) -> Profile:
    first_name = graph.first_names.get(user_id)
    if first_name is None:
        raise ApiError(404, "not_found", f"user {user_id} has no profile")
    return Profile(user_id=user_id, first_name=first_name)


@router.put(
    "/v1/users/{user_id}/profile",
    response_model=Profile,
    summary="Set the first name shown in friend lists and activity feeds",
    responses={**ERASED, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def set_profile(
    user_id: UserId, body: ProfileIn, _: ServiceAuth, graph: Graph, lock: WriteLock, emit: Emit
) -> Profile:
    async with lock:
        not_erased(graph, user_id=user_id)
        if graph.first_names.get(user_id) != body.first_name:
            payload = UserProfilePayload(user_id=user_id, first_name=body.first_name)
            await emit(UserProfileUpdated.create(payload, producer=SERVICE))
    return Profile(user_id=user_id, first_name=body.first_name)


@router.delete(
    "/v1/users/{user_id}",
    response_model=Erased,
    summary="Erase a user: friendships, reviews, privacy, name and every counter drop them",
    responses={**AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
)
async def erase_user(
    user_id: UserId, _: ServiceAuth, graph: Graph, store: Store, lock: WriteLock, emit: Emit
) -> Erased:
    async with lock:
        if user_id not in graph.erased:
            await emit(UserErased.create(UserRef(user_id=user_id), producer=SERVICE))
    # after the event, so Redis being down never holds an erasure back: a retry (503) cleans up
    await store.forget_user(user_id)
    return Erased(user_id=user_id)
