"""The social service's routes, one module per resource:

- :mod:`.friendships`: ``PUT|DELETE /v1/users/{user_id}/friends/{friend_id}``,
  ``GET /v1/users/{user_id}/friends``;
- :mod:`.reviews`: ``POST /v1/reviews``, ``GET|PUT|DELETE /v1/reviews/{review_id}``,
  ``GET /v1/products/{product_id}/reviews``;
- :mod:`.shares`: ``POST /v1/shares``;
- :mod:`.questions`: ``POST|GET /v1/products/{product_id}/questions``,
  ``POST /v1/questions/{question_id}/answers``;
- :mod:`.answers`: ``POST /v1/answers/{answer_id}/votes``, ``POST /v1/answers/{answer_id}/accept``;
- :mod:`.moderation`: ``POST /v1/questions/{question_id}/reports|hide|show``,
  ``POST /v1/answers/{answer_id}/reports|hide|show``;
- :mod:`.privacy`: ``GET|PUT /v1/users/{user_id}/privacy``;
- :mod:`.users`: ``GET|PUT /v1/users/{user_id}/profile``, ``DELETE /v1/users/{user_id}``.

Their bodies are in :mod:`services.social.schemas`; what they share (state on ``app.state`` as
dependencies, publishing, the erased-user check) in :mod:`.deps`.
"""

from __future__ import annotations

from services.social.api import (
    answers,
    friendships,
    moderation,
    privacy,
    questions,
    reviews,
    shares,
    users,
)

#: in the order the OpenAPI document lists them
ROUTERS = (
    friendships.router,
    reviews.router,
    shares.router,
    questions.router,
    answers.router,
    moderation.router,
    privacy.router,
    users.router,
)
