"""``POST /v1/shares``: a user shared a product on a channel (``product.shared``).

``Idempotency-Key`` makes retries safe (:func:`socialproof.idempotency.idempotent`). Shares are
not part of the service's view: the broker's acknowledgement is all there is to wait for."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from contracts.events import ProductShared, ProductSharedPayload
from services.social.api.deps import SERVICE, Graph, ShareRecords, log, not_erased
from services.social.schemas import Share, ShareIn
from socialproof.deps import Publisher
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ErrorBody, ServiceAuth
from socialproof.idempotency import IdempotencyKey, idempotent

router = APIRouter(tags=["shares"])


@router.post(
    "/v1/shares",
    status_code=201,
    response_model=Share,
    summary="Record that a user shared a product on a channel",
    responses={
        409: {"model": ErrorBody, "description": "erased user, or Idempotency-Key reused"},
        **AUTH_RESPONSES,
        **ERROR_RESPONSES,
    },
)
async def share(
    body: ShareIn,
    _: ServiceAuth,
    graph: Graph,
    publisher: Publisher,
    records: ShareRecords,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    not_erased(graph, user_id=body.user_id)

    async def publish(ids: dict[str, Any]) -> dict[str, Any]:
        event = ProductShared.create(
            ProductSharedPayload(share_id=ids["share_id"], **body.model_dump()),
            producer=SERVICE,
            event_id=uuid.UUID(ids["event_id"]),
            occurred_at=datetime.fromisoformat(ids["occurred_at"]),
        )
        await publisher.publish(event)
        log.info(event.event_type, extra={"event_id": str(event.event_id)})
        return Share(
            **event.payload.model_dump(), event_id=event.event_id, occurred_at=event.occurred_at
        ).model_dump(mode="json")

    return await idempotent(
        records,
        idempotency_key,
        body.model_dump(mode="json"),
        new_ids=lambda: {
            "share_id": f"s-{uuid.uuid4().hex}",
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC).isoformat(),
        },
        publish=publish,
    )
