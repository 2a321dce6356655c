"""Per-user rolling-hour limits of the social service's writes: questions and answers
(``SOCIALPROOF_QA_POSTS_PER_HOUR``) and shares, each of which creates a referral link
(``SOCIALPROOF_SHARE_LINKS_PER_HOUR``). One mechanism for both: a slot in a per-user sorted set,
taken atomically by ``posts_limit.lua`` (:meth:`services.social.store.QaStore.take`), so every
process of the service agrees; over the limit a write is refused with 429 and ``Retry-After``
(seconds until the oldest slot leaves the hour)."""

from __future__ import annotations

import logging

import redis.exceptions

from services.social.store import Limited, QaStore
from socialproof.http import ApiError, FieldError

log = logging.getLogger("socialproof.social")


class HourlyLimit:
    """One write's place in its author's rolling-hour budget: taken by the checks before
    publishing, given back when the write fails (a retry then does not count twice)."""

    def __init__(
        self, store: QaStore, kind: Limited, user_id: str, per_hour: int, what: str
    ) -> None:
        self.store, self.kind, self.user_id, self.per_hour = store, kind, user_id, per_hour
        #: how the refusal names what was counted ("questions and answers", "share links")
        self.what = what
        self.slot: str | None = None

    async def take(self) -> None:
        self.slot, wait_s = await self.store.take(self.kind, self.user_id, self.per_hour)
        if self.slot is None:
            raise ApiError(
                429,
                "rate_limited",
                f"user {self.user_id} reached the limit of {self.per_hour} {self.what} per "
                f"rolling hour; retry in {wait_s} s",
                fields=[
                    FieldError(
                        field="user_id",
                        message=f"more than {self.per_hour} {self.what} per hour",
                        type="rate_limited",
                    )
                ],
                headers={"Retry-After": str(wait_s)},
            )

    async def give_back(self) -> None:
        if self.slot is not None:
            try:
                await self.store.release(self.kind, self.user_id, self.slot)
            except redis.exceptions.RedisError as exc:  # it expires within the hour anyway
                log.warning("could not give a slot back", extra={"error": repr(exc)})
            self.slot = None
