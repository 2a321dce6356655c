"""Reviews: post (``review.posted``; a user's second review of a product edits the first,
``review.edited``), read, edit, delete (``review.deleted``), and a product's reviews page by
page, each marked ``verified`` when its author has a kept purchase of the product (read from the
stream processor's view in Redis: 503 when Redis does not answer, never a guess)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from contracts.events import ReviewDeleted, ReviewEdited, ReviewPayload, ReviewPosted, ReviewRef
from services.social.api.deps import SERVICE, Emit, Graph, Store, not_erased
from services.social.graph import ReviewState, SocialGraph
from services.social.schemas import (
    ERASED,
    NOT_FOUND_REVIEW,
    UNVERIFIABLE,
    ListedReview,
    ProductId,
    Review,
    ReviewEdit,
    ReviewId,
    ReviewIn,
)
from socialproof.deps import WriteLock
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, ServiceAuth
from socialproof.paging import Cursor, Limit, Page, paginate

router = APIRouter(tags=["reviews"])


def existing_review(graph: SocialGraph, review_id: str) -> ReviewState:
    review = graph.reviews.get(review_id)
    if review is None:
        raise ApiError(404, "not_found", f"no review {review_id}")
    return review


@router.post(
    "/v1/reviews",
    status_code=201,
    response_model=Review,
    summary="Post a review; a user's second review of a product edits the first",
    responses={
        200: {"model": Review, "description": "the user had reviewed the product: edited"},
        **ERASED,
        **AUTH_RESPONSES,
        **ERROR_RESPONSES,
    },
)
async def post_review(
    body: ReviewIn, _: ServiceAuth, graph: Graph, lock: WriteLock, emit: Emit
) -> JSONResponse:
    async with lock:
        not_erased(graph, user_id=body.user_id)
        previous = graph.review_by(body.user_id, body.product_id)
        review_id = previous.review_id if previous else f"rv-{uuid.uuid4().hex}"
        payload = ReviewPayload(review_id=review_id, **body.model_dump())
        event_type = ReviewEdited if previous else ReviewPosted
        await emit(event_type.create(payload, producer=SERVICE))
        review = Review.of(graph.reviews[review_id])
    return JSONResponse(review.model_dump(mode="json"), status_code=200 if previous else 201)


@router.get(
    "/v1/reviews/{review_id}",
    response_model=Review,
    summary="Read a review",
    responses=NOT_FOUND_REVIEW,
)
async def get_review(review_id: ReviewId, graph: Graph) -> Review:
    return Review.of(existing_review(graph, review_id))


@router.put(
    "/v1/reviews/{review_id}",
    response_model=Review,
    summary="Edit a review's rating and text",
    responses={**NOT_FOUND_REVIEW, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def edit_review(
    review_id: ReviewId, body: ReviewEdit, _: ServiceAuth, graph: Graph, lock: WriteLock, emit: Emit
) -> Review:
    async with lock:
        current = existing_review(graph, review_id)
        if (current.rating, current.text) != (body.rating, body.text):
            payload = ReviewPayload(
                review_id=review_id,
                user_id=current.user_id,
                product_id=current.product_id,
                rating=body.rating,
                text=body.text,
            )
            await emit(ReviewEdited.create(payload, producer=SERVICE))
        return Review.of(existing_review(graph, review_id))


@router.delete(
    "/v1/reviews/{review_id}",
    status_code=204,
    summary="Delete a review",
    responses={**NOT_FOUND_REVIEW, **AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
)
async def delete_review(
    review_id: ReviewId, _: ServiceAuth, graph: Graph, lock: WriteLock, emit: Emit
) -> Response:
    async with lock:
        current = existing_review(graph, review_id)
        ref = ReviewRef(review_id=review_id, user_id=current.user_id, product_id=current.product_id)
        await emit(ReviewDeleted.create(ref, producer=SERVICE))
    return Response(status_code=204)


@router.get(
    "/v1/products/{product_id}/reviews",
    response_model=Page[ListedReview],
    summary="A product's reviews, by review id, page by page, marked when the author bought it",
    responses=UNVERIFIABLE,
)
async def product_reviews(
    product_id: ProductId, graph: Graph, store: Store, limit: Limit = 20, cursor: Cursor = None
) -> Page[ListedReview]:
    reviews = graph.reviews_of_product(product_id)
    page, next_cursor = paginate(reviews, lambda r: r.review_id, cursor, limit)
    verified = await store.verified_buyers((product_id, r.user_id) for r in page)
    return Page[ListedReview](
        items=[ListedReview.of_verified(r, (product_id, r.user_id) in verified) for r in page],
        next_cursor=next_cursor,
    )
