"""``POST /v1/shares``: a user shared a product on a channel (``product.shared``), and gets a
referral link for that share.

Each share makes a new link token (:func:`new_link_token`: ``lk-`` and 130 random bits from
:mod:`secrets` in lower-case base32, never derived from the user), carried on the event as
``link_token`` and answered with the storefront link to send (``SOCIALPROOF_STOREFRONT_URL`` with
``?ref=<token>``). A friend's order carries the token as ``referral``; the stream processor
credits the sharer (services/counters). Link creation is limited per user and rolling hour
(``SOCIALPROOF_SHARE_LINKS_PER_HOUR``, the same mechanism as the Q&A post limit,
:mod:`services.social.api.limits`): then 429 with ``Retry-After``.

``Idempotency-Key`` makes retries safe (:func:`socialproof.idempotency.idempotent`): the token is
reserved with the share's ids, so a retry answers (or republishes) the same token and does not
count against the limit again. Shares are not part of the service's view: the broker's
acknowledgement is all there is to wait for."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from contracts.events import ProductShared, ProductSharedPayload
from services.social.api.deps import SERVICE, Graph, Settings, ShareRecords, Store, log, not_erased
from services.social.api.limits import HourlyLimit
from services.social.schemas import SHARE_RATE_LIMITED, Share, ShareIn
from socialproof.deps import Publisher
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ErrorBody, ServiceAuth
from socialproof.idempotency import IdempotencyKey, idempotent

router = APIRouter(tags=["shares"])

#: RFC 4648 base32, lower case: what ``contracts.events.LinkToken`` accepts after ``lk-``
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
TOKEN_BITS = 130  # 26 characters of 5 bits


def new_link_token() -> str:
    """``lk-`` and 26 base32 characters of 130 bits from the OS's CSPRNG."""
    bits = secrets.randbits(TOKEN_BITS)
    chars = [BASE32[(bits >> shift) & 31] for shift in range(TOKEN_BITS - 5, -1, -5)]
    return "lk-" + "".join(chars)


def share_link(storefront_url: str, product_id: str, token: str) -> str:
    """The storefront URL (``{product_id}`` replaced) with ``ref=<token>`` added to its query."""
    parts = urlsplit(storefront_url.replace("{product_id}", quote(product_id, safe="")))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ref"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("ref", token)])))


@router.post(
    "/v1/shares",
    status_code=201,
    response_model=Share,
    summary="Record that a user shared a product on a channel; answers the share's referral link",
    responses={
        409: {"model": ErrorBody, "description": "erased user, or Idempotency-Key reused"},
        **SHARE_RATE_LIMITED,
        **AUTH_RESPONSES,
        **ERROR_RESPONSES,
    },
)
async def share(
    body: ShareIn,
    _: ServiceAuth,
    graph: Graph,
    settings: Settings,
    store: Store,
    publisher: Publisher,
    records: ShareRecords,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    limit = HourlyLimit(store, "links", body.user_id, settings.share_links_per_hour, "share links")

    async def check() -> None:
        not_erased(graph, user_id=body.user_id)
        await limit.take()

    async def publish(ids: dict[str, Any]) -> dict[str, Any]:
        # (a key reserved before links existed has none: this attempt makes it)
        ids.setdefault("link_token", new_link_token())
        event = ProductShared.create(
            ProductSharedPayload(
                share_id=ids["share_id"], link_token=ids["link_token"], **body.model_dump()
            ),
            producer=SERVICE,
            event_id=uuid.UUID(ids["event_id"]),
            occurred_at=datetime.fromisoformat(ids["occurred_at"]),
        )
        await publisher.publish(event)
        log.info(event.event_type, extra={"event_id": str(event.event_id)})
        return Share(
            **event.payload.model_dump(),
            link=share_link(settings.storefront_url, body.product_id, ids["link_token"]),
            event_id=event.event_id,
            occurred_at=event.occurred_at,
        ).model_dump(mode="json")

    try:
        return await idempotent(
            records,
            idempotency_key,
            body.model_dump(mode="json"),
            new_ids=lambda: {
                "share_id": f"s-{uuid.uuid4().hex}",
                "link_token": new_link_token(),
                "event_id": str(uuid.uuid4()),
                "occurred_at": datetime.now(UTC).isoformat(),
            },
            publish=publish,
            check=check,
        )
    except Exception:
        await limit.give_back()
        raise
