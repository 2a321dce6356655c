"""Questions about products and their answers: ask (``question.asked``), answer
(``answer.posted``), and a product's visible questions, newest first, page by page, each with its
visible answers ranked (verified buyers' first, then accepted, then helpful votes, then oldest).

Asking and answering accept ``Idempotency-Key``; each user may post
``SOCIALPROOF_QA_POSTS_PER_HOUR`` questions and answers per rolling hour (counted in Redis, so
every process of the service agrees; then 429 with ``Retry-After``). Whether an answer's author
is a verified buyer is read from the stream processor's view in Redis at each read (503 when
Redis does not answer, never a guess)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from contracts.events import AnswerPayload, AnswerPosted, QuestionAsked, QuestionPayload
from services.social.api.deps import (
    SERVICE,
    AnswerRecords,
    Emit,
    Graph,
    QuestionRecords,
    Settings,
    Store,
    caught_up,
    not_erased,
)
from services.social.api.limits import HourlyLimit
from services.social.qa import ranked
from services.social.schemas import (
    NOT_FOUND_QUESTION,
    RATE_LIMITED,
    UNVERIFIABLE,
    Answer,
    AnswerIn,
    ListedAnswer,
    ListedQuestion,
    ProductId,
    Question,
    QuestionId,
    QuestionIn,
)
from services.social.settings import SocialSettings
from services.social.store import QaStore
from socialproof.deps import View, WriteLock
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    ServiceAuth,
)
from socialproof.idempotency import IdempotencyKey, idempotent
from socialproof.paging import Cursor, Limit, Page, paginate

router = APIRouter(tags=["questions"])

CREATED_RESPONSES = {
    409: {"model": ErrorBody, "description": "erased user, or Idempotency-Key reused"},
    **RATE_LIMITED,
    **AUTH_RESPONSES,
    **ERROR_RESPONSES,
}


def post_limit(store: QaStore, settings: SocialSettings, user_id: str) -> HourlyLimit:
    """The author's budget of questions and answers (``SOCIALPROOF_QA_POSTS_PER_HOUR``)."""
    return HourlyLimit(store, "posts", user_id, settings.qa_posts_per_hour, "questions and answers")


def new_ids(id_field: str, prefix: str) -> dict[str, Any]:
    return {
        id_field: f"{prefix}-{uuid.uuid4().hex}",
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def envelope(ids: dict[str, Any]) -> dict[str, Any]:
    """The reserved event id and time: a retry republishes the same event."""
    return {
        "event_id": uuid.UUID(ids["event_id"]),
        "occurred_at": datetime.fromisoformat(ids["occurred_at"]),
    }


@router.post(
    "/v1/products/{product_id}/questions",
    status_code=201,
    response_model=Question,
    summary="Ask a question about a product",
    responses=CREATED_RESPONSES,
)
async def ask(
    product_id: ProductId,
    body: QuestionIn,
    _: ServiceAuth,
    graph: Graph,
    settings: Settings,
    store: Store,
    records: QuestionRecords,
    lock: WriteLock,
    emit: Emit,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    limit = post_limit(store, settings, body.user_id)

    async def check() -> None:
        not_erased(graph, user_id=body.user_id)
        await limit.take()

    async def publish(ids: dict[str, Any]) -> dict[str, Any]:
        payload = QuestionPayload(
            question_id=ids["question_id"], product_id=product_id, **body.model_dump()
        )
        event = QuestionAsked.create(payload, producer=SERVICE, **envelope(ids))
        await emit(event)
        return Question(**payload.model_dump(), created_at=event.occurred_at).model_dump(
            mode="json"
        )

    async with lock:
        try:
            return await idempotent(
                records,
                idempotency_key,
                {"product_id": product_id, **body.model_dump(mode="json")},
                new_ids=lambda: new_ids("question_id", "q"),
                publish=publish,
                check=check,
            )
        except Exception:
            await limit.give_back()
            raise


@router.post(
    "/v1/questions/{question_id}/answers",
    status_code=201,
    response_model=Answer,
    summary="Answer a question",
    responses={**NOT_FOUND_QUESTION, **CREATED_RESPONSES},
)
async def answer(
    question_id: QuestionId,
    body: AnswerIn,
    _: ServiceAuth,
    graph: Graph,
    view: View,
    settings: Settings,
    store: Store,
    records: AnswerRecords,
    lock: WriteLock,
    emit: Emit,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    limit = post_limit(store, settings, body.user_id)
    product_id = ""

    async def check() -> None:
        nonlocal product_id
        not_erased(graph, user_id=body.user_id)
        question = await caught_up(view, lambda: graph.qa.visible_question(question_id))
        if question is None:
            raise ApiError(404, "not_found", f"no question {question_id}")
        product_id = question.product_id
        await limit.take()

    async def publish(ids: dict[str, Any]) -> dict[str, Any]:
        payload = AnswerPayload(
            answer_id=ids["answer_id"],
            question_id=question_id,
            product_id=product_id,
            **body.model_dump(),
        )
        event = AnswerPosted.create(payload, producer=SERVICE, **envelope(ids))
        await emit(event)
        return Answer(**payload.model_dump(), created_at=event.occurred_at).model_dump(mode="json")

    async with lock:
        try:
            return await idempotent(
                records,
                idempotency_key,
                {"question_id": question_id, **body.model_dump(mode="json")},
                new_ids=lambda: new_ids("answer_id", "a"),
                publish=publish,
                check=check,
            )
        except Exception:
            await limit.give_back()
            raise


@router.get(
    "/v1/products/{product_id}/questions",
    response_model=Page[ListedQuestion],
    summary="A product's questions, newest first, page by page, with their ranked answers",
    responses=UNVERIFIABLE,
)
async def product_questions(
    product_id: ProductId, graph: Graph, store: Store, limit: Limit = 20, cursor: Cursor = None
) -> Page[ListedQuestion]:
    questions = graph.qa.questions_of_product(product_id)
    page, next_cursor = paginate(questions, lambda q: q.sort_key, cursor, limit)
    answers = {q.question_id: q.visible_answers() for q in page}
    verified = await store.verified_buyers(
        (product_id, a.user_id) for found in answers.values() for a in found
    )
    buyers = {user_id for _, user_id in verified}
    items = [
        ListedQuestion(
            **Question.of(q).model_dump(),
            answers=[
                ListedAnswer.of(a, a.user_id in buyers)
                for a in ranked(answers[q.question_id], buyers)
            ],
        )
        for q in page
    ]
    return Page[ListedQuestion](items=items, next_cursor=next_cursor)
