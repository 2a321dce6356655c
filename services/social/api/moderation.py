"""Moderation of questions and answers (``qa.moderated``, newest decision wins).

- Shoppers report a visible question or answer, one report per user (a second changes nothing);
  the reports are kept in Redis (:mod:`services.social.store`). Once
  ``SOCIALPROOF_QA_REPORTS_TO_HIDE`` users reported it, the service hides it (reason
  ``reported``), unless the shop chose to show it: the shop's word stands.
- The shop hides or shows a question (with its answers) or one answer. Asking for the state it
  is already in publishes nothing, except that showing content never moderated records the shop's
  approval (reports no longer hide it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter

from contracts.events import QaModerated, QaModerationPayload
from services.social.api.deps import (
    SERVICE,
    Emit,
    Emitter,
    Graph,
    Settings,
    Store,
    caught_up,
    not_erased,
)
from services.social.graph import SocialGraph
from services.social.qa import AnswerState, QuestionState
from services.social.schemas import (
    ERASED,
    NOT_FOUND_ANSWER,
    NOT_FOUND_QUESTION,
    AnswerId,
    Moderation,
    ModerationIn,
    QuestionId,
    Report,
    ReportIn,
)
from services.social.settings import SocialSettings
from services.social.store import QaStore, Target
from socialproof.deps import View, WriteLock
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, ServiceAuth
from socialproof.topicview import TopicView

router = APIRouter(tags=["moderation"])

Item = QuestionState | AnswerState
#: why reports hid something (the shop's own reason otherwise, "shop" when it gives none)
REPORTED = "reported"


async def found(
    view: TopicView, target: Target, target_id: str, lookup: Callable[[], Item | None]
) -> Item:
    item = await caught_up(view, lookup)
    if item is None:
        raise ApiError(404, "not_found", f"no {target} {target_id}")
    return item


def moderated(target: Target, item: Item, hidden: bool, reason: str) -> QaModerated:
    payload = QaModerationPayload(
        target=target,
        target_id=item.question_id if isinstance(item, QuestionState) else item.answer_id,
        question_id=item.question_id,
        product_id=item.product_id,
        hidden=hidden,
        reason=reason,
    )
    return QaModerated.create(payload, producer=SERVICE)


def visible(graph: SocialGraph, target: Target, target_id: str) -> Callable[[], Item | None]:
    if target == "question":
        return lambda: graph.qa.visible_question(target_id)
    return lambda: graph.qa.visible_answer(target_id)


def existing(graph: SocialGraph, target: Target, target_id: str) -> Callable[[], Item | None]:
    if target == "question":
        return lambda: graph.qa.questions.get(target_id)
    return lambda: graph.qa.answers.get(target_id)


# --- reports --------------------------------------------------------------------------------------


async def report(
    target: Target,
    target_id: str,
    body: ReportIn,
    graph: SocialGraph,
    view: TopicView,
    settings: SocialSettings,
    store: QaStore,
    lock: asyncio.Lock,
    emit: Emitter,
) -> Report:
    async with lock:
        not_erased(graph, user_id=body.user_id)
        item = await found(view, target, target_id, visible(graph, target, target_id))
        reports = await store.report(target, target_id, body.user_id, body.reason)
        if reports >= settings.qa_reports_to_hide and not item.moderation.shown_by_shop:
            await emit(moderated(target, item, True, REPORTED))
        return Report(
            target=target,
            target_id=target_id,
            user_id=body.user_id,
            reports=reports,
            hidden=item.hidden,
        )


REPORT_RESPONSES = {**ERASED, **AUTH_RESPONSES, **ERROR_RESPONSES}


@router.post(
    "/v1/questions/{question_id}/reports",
    response_model=Report,
    summary="Report a question (once per user); enough reports hide it",
    responses={**NOT_FOUND_QUESTION, **REPORT_RESPONSES},
)
async def report_question(
    question_id: QuestionId,
    body: ReportIn,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    settings: Settings,
    store: Store,
    lock: WriteLock,
    emit: Emit,
) -> Report:
    return await report("question", question_id, body, graph, view, settings, store, lock, emit)


@router.post(
    "/v1/answers/{answer_id}/reports",
    response_model=Report,
    summary="Report an answer (once per user); enough reports hide it",
    responses={**NOT_FOUND_ANSWER, **REPORT_RESPONSES},
)
async def report_answer(
    answer_id: AnswerId,
    body: ReportIn,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    settings: Settings,
    store: Store,
    lock: WriteLock,
    emit: Emit,
) -> Report:
    return await report("answer", answer_id, body, graph, view, settings, store, lock, emit)


# --- the shop hides and shows -------------------------------------------------------------------


async def moderate(
    target: Target,
    target_id: str,
    hidden: bool,
    body: ModerationIn | None,
    graph: SocialGraph,
    view: TopicView,
    lock: asyncio.Lock,
    emit: Emitter,
) -> Moderation:
    async with lock:
        item = await found(view, target, target_id, existing(graph, target, target_id))
        if item.hidden != hidden or item.moderation.at is None:
            reason = (body.reason if body else "") or "shop"
            await emit(moderated(target, item, hidden, reason))
        return Moderation(
            target=target, target_id=target_id, question_id=item.question_id, hidden=item.hidden
        )


SHOP_RESPONSES = {**AUTH_RESPONSES, **ERROR_RESPONSES}


@router.post(
    "/v1/questions/{question_id}/hide",
    response_model=Moderation,
    summary="Hide a question with its answers (the shop)",
    responses={**NOT_FOUND_QUESTION, **SHOP_RESPONSES},
)
async def hide_question(
    question_id: QuestionId,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    lock: WriteLock,
    emit: Emit,
    body: ModerationIn | None = None,
) -> Moderation:
    return await moderate("question", question_id, True, body, graph, view, lock, emit)


@router.post(
    "/v1/questions/{question_id}/show",
    response_model=Moderation,
    summary="Show a question again, or approve it: reports no longer hide it (the shop)",
    responses={**NOT_FOUND_QUESTION, **SHOP_RESPONSES},
)
async def show_question(
    question_id: QuestionId,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    lock: WriteLock,
    emit: Emit,
    body: ModerationIn | None = None,
) -> Moderation:
    return await moderate("question", question_id, False, body, graph, view, lock, emit)


@router.post(
    "/v1/answers/{answer_id}/hide",
    response_model=Moderation,
    summary="Hide an answer (the shop)",
    responses={**NOT_FOUND_ANSWER, **SHOP_RESPONSES},
)
async def hide_answer(
    answer_id: AnswerId,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    lock: WriteLock,
    emit: Emit,
    body: ModerationIn | None = None,
) -> Moderation:
    return await moderate("answer", answer_id, True, body, graph, view, lock, emit)


@router.post(
    "/v1/answers/{answer_id}/show",
    response_model=Moderation,
    summary="Show an answer again, or approve it: reports no longer hide it (the shop)",
    responses={**NOT_FOUND_ANSWER, **SHOP_RESPONSES},
)
async def show_answer(
    answer_id: AnswerId,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    lock: WriteLock,
    emit: Emit,
    body: ModerationIn | None = None,
) -> Moderation:
    return await moderate("answer", answer_id, False, body, graph, view, lock, emit)
