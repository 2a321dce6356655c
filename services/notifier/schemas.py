"""The notifier HTTP API's bodies, for the OpenAPI document and request validation.

The proof routes answer pre-serialised JSON for speed (:mod:`services.notifier.api.proof`), so
:class:`ProofOut` and :class:`ProofList` only document what they send; the proof itself is
:class:`services.notifier.proof.Proof`, what the reader returns (its reviews with their
verified-purchase subset, ``ReviewSummary``, and its questions, ``QuestionCounts``).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from contracts.events import Identifier
from services.notifier.proof import FriendsBought, Proof


class ProofOut(Proof):
    friends_bought: FriendsBought | None = Field(
        default=None, description="only with a valid viewer token, for that viewer"
    )


class ProofList(BaseModel):
    products: list[ProofOut]


class ViewerTokenIn(BaseModel):
    viewer_id: Identifier = Field(examples=["u1"])


class ViewerTokenOut(BaseModel):
    token: str
    viewer_id: str
    expires_at: datetime
