"""A user's privacy choices: read them (the shop's defaults, ``SOCIALPROOF_DEFAULT_*``, until the
user chooses) and set them (``privacy.settings_changed``). ``notify_on_questions`` (a note when a
shopper asks about a product the user bought) is off unless the user turns it on."""

from __future__ import annotations

from fastapi import APIRouter

from contracts.events import PrivacySettingsChanged, PrivacySettingsPayload
from services.social.api.deps import SERVICE, Emit, Graph, Settings, not_erased
from services.social.graph import SocialGraph
from services.social.schemas import ERASED, Privacy, PrivacyIn, UserId
from services.social.settings import SocialSettings
from socialproof.deps import WriteLock
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ServiceAuth

router = APIRouter(tags=["users"])


def privacy_of(graph: SocialGraph, settings: SocialSettings, user_id: str) -> Privacy:
    chosen = graph.privacy.get(user_id)
    return Privacy(
        user_id=user_id,
        share_purchases_with_friends=chosen.share_purchases_with_friends
        if chosen
        else settings.default_share_purchases,
        show_in_activity_feed=chosen.show_in_activity_feed
        if chosen
        else settings.default_show_in_activity_feed,
        notify_on_questions=chosen.notify_on_questions if chosen else False,
        chosen=chosen is not None,
    )


@router.get(
    "/v1/users/{user_id}/privacy",
    response_model=Privacy,
    summary="A user's privacy choices (the shop's defaults until they choose)",
    responses=AUTH_RESPONSES,
)
async def get_privacy(user_id: UserId, _: ServiceAuth, graph: Graph, settings: Settings) -> Privacy:
    return privacy_of(graph, settings, user_id)


@router.put(
    "/v1/users/{user_id}/privacy",
    response_model=Privacy,
    summary="Set a user's privacy choices",
    responses={**ERASED, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def set_privacy(
    user_id: UserId,
    body: PrivacyIn,
    _: ServiceAuth,
    graph: Graph,
    settings: Settings,
    lock: WriteLock,
    emit: Emit,
) -> Privacy:
    async with lock:
        not_erased(graph, user_id=user_id)
        current = privacy_of(graph, settings, user_id)
        chosen = current.model_dump(include=set(PrivacyIn.model_fields))
        if not current.chosen or chosen != body.model_dump():
            payload = PrivacySettingsPayload(user_id=user_id, **body.model_dump())
            await emit(PrivacySettingsChanged.create(payload, producer=SERVICE))
        return privacy_of(graph, settings, user_id)
