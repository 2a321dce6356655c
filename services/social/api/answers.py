"""Helpful votes on answers (``answer.voted``: one vote per user and answer, voting again
replaces it) and accepting an answer (``answer.accepted``: by the question's asker, or by the
shop). Repeating a vote or an acceptance publishes nothing and answers the same."""

from __future__ import annotations

from fastapi import APIRouter

from contracts.events import (
    AnswerAcceptancePayload,
    AnswerAccepted,
    AnswerVoted,
    AnswerVotePayload,
)
from services.social.api.deps import SERVICE, Emit, Graph, caught_up, not_erased
from services.social.graph import SocialGraph
from services.social.qa import AnswerState
from services.social.schemas import (
    ERASED,
    NOT_FOUND_ANSWER,
    Acceptance,
    AcceptIn,
    AnswerId,
    Vote,
    VoteIn,
)
from socialproof.deps import View, WriteLock
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    FieldError,
    ServiceAuth,
)
from socialproof.topicview import TopicView

router = APIRouter(tags=["questions"])


def unprocessable(message: str, field: str, kind: str) -> ApiError:
    return ApiError(
        422,
        "validation_failed",
        message,
        fields=[FieldError(field=field, message=message, type=kind)],
    )


async def visible_answer(graph: SocialGraph, view: TopicView, answer_id: str) -> AnswerState:
    answer = await caught_up(view, lambda: graph.qa.visible_answer(answer_id))
    if answer is None:
        raise ApiError(404, "not_found", f"no answer {answer_id}")
    return answer


@router.post(
    "/v1/answers/{answer_id}/votes",
    response_model=Vote,
    summary="Vote an answer helpful or not; a user's second vote replaces the first",
    responses={**NOT_FOUND_ANSWER, **ERASED, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def vote(
    answer_id: AnswerId,
    body: VoteIn,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    lock: WriteLock,
    emit: Emit,
) -> Vote:
    async with lock:
        not_erased(graph, user_id=body.user_id)
        answer = await visible_answer(graph, view, answer_id)
        if answer.user_id == body.user_id:
            raise unprocessable("a user cannot vote on their own answer", "user_id", "own_answer")
        current = answer.votes.get(body.user_id)
        if current is None or current[0] != body.helpful:
            payload = AnswerVotePayload(
                answer_id=answer_id,
                question_id=answer.question_id,
                product_id=answer.product_id,
                user_id=body.user_id,
                helpful=body.helpful,
            )
            await emit(AnswerVoted.create(payload, producer=SERVICE))
        return Vote(
            answer_id=answer_id,
            question_id=answer.question_id,
            user_id=body.user_id,
            helpful=body.helpful,
            helpful_votes=answer.helpful,
        )


@router.post(
    "/v1/answers/{answer_id}/accept",
    response_model=Acceptance,
    summary="Accept an answer, as the question's asker or as the shop; repeating is harmless",
    responses={
        **NOT_FOUND_ANSWER,
        **ERASED,
        **AUTH_RESPONSES,
        403: {"model": ErrorBody, "description": "wrong token, or `user_id` is not the asker"},
        **ERROR_RESPONSES,
    },
)
async def accept(
    answer_id: AnswerId,
    body: AcceptIn,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    lock: WriteLock,
    emit: Emit,
) -> Acceptance:
    if body.by == "asker" and body.user_id is None:
        raise unprocessable("the asker's user_id is required with by=asker", "user_id", "missing")
    if body.by == "shop" and body.user_id is not None:
        raise unprocessable("user_id goes with by=asker only", "user_id", "extra_forbidden")
    async with lock:
        if body.user_id is not None:
            not_erased(graph, user_id=body.user_id)
        answer = await visible_answer(graph, view, answer_id)
        asker = graph.qa.questions[answer.question_id].user_id
        if body.by == "asker" and body.user_id != asker:
            raise ApiError(
                403,
                "not_the_asker",
                f"only the question's asker may accept an answer as by=asker, not {body.user_id}",
                fields=[FieldError(field="user_id", message="not the asker", type="not_the_asker")],
            )
        if not answer.accepted:
            payload = AnswerAcceptancePayload(
                answer_id=answer_id,
                question_id=answer.question_id,
                product_id=answer.product_id,
                by=body.by,
                user_id=body.user_id,
            )
            await emit(AnswerAccepted.create(payload, producer=SERVICE))
        return Acceptance(answer_id=answer_id, question_id=answer.question_id)
