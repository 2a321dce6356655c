"""Questions and answers in the social service's view, folded from ``social.questions``.

:class:`QaBoard` is part of :class:`services.social.graph.SocialGraph` (which hands it the Q&A
events and erasures), rebuilt on every start by replaying the topic like the rest of the view.
Applying is idempotent: a re-delivered question or answer (same id) changes nothing, votes and
moderation are newest-wins by ``(occurred_at, event_id)``, acceptance is a flag that stays set.

- A question hidden by moderation is hidden with its answers; an answer may be hidden alone.
- Erasure (:meth:`QaBoard.erase`) drops the user's questions (with every answer to them), their
  answers and their votes; the graph ignores later events about them.
- Whether an answer's author is a verified buyer is not known here (the stream processor knows
  purchases): readers look it up in Redis and pass it to :func:`ranked`.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contracts.events import (
    AnswerAccepted,
    AnswerPosted,
    AnswerVoted,
    Event,
    QaModerated,
    QuestionAsked,
)

#: (occurred_at, event_id): the order newest-wins facts compare in
Stamp = tuple[datetime, str]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEWEST_FIRST = 10**17  # > any event time in microseconds until the year 5138


def stamp(event: Event) -> Stamp:
    return (event.occurred_at, str(event.event_id))


@dataclass
class Moderated:
    """What moderation says about a question or an answer (newest decision wins)."""

    hidden: bool = False
    reason: str = ""
    at: Stamp | None = None

    def apply(self, event: QaModerated) -> None:
        if self.at is None or stamp(event) > self.at:
            self.hidden, self.reason, self.at = (
                event.payload.hidden,
                event.payload.reason,
                stamp(event),
            )

    @property
    def shown_by_shop(self) -> bool:
        """The shop showed it (again): reports do not hide it any more."""
        return self.at is not None and not self.hidden


@dataclass
class AnswerState:
    answer_id: str
    question_id: str
    product_id: str
    user_id: str
    text: str
    created_at: datetime
    moderation: Moderated = field(default_factory=Moderated)
    accepted: bool = False
    #: voter -> (helpful, when)
    votes: dict[str, tuple[bool, Stamp]] = field(default_factory=dict)

    @property
    def hidden(self) -> bool:
        return self.moderation.hidden

    @property
    def helpful(self) -> int:
        return sum(1 for helpful, _ in self.votes.values() if helpful)


@dataclass
class QuestionState:
    question_id: str
    product_id: str
    user_id: str
    text: str
    created_at: datetime
    moderation: Moderated = field(default_factory=Moderated)
    answers: dict[str, AnswerState] = field(default_factory=dict)

    @property
    def hidden(self) -> bool:
        return self.moderation.hidden

    @property
    def sort_key(self) -> str:
        """Ascending order of this string is newest first (ties: by id); a paging cursor."""
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        return f"{_NEWEST_FIRST - micros:017d}-{self.question_id}"

    def visible_answers(self) -> list[AnswerState]:
        return [a for a in self.answers.values() if not a.hidden]


def ranked(answers: list[AnswerState], verified: Container[str]) -> list[AnswerState]:
    """Answers by verified buyers (``verified``: their authors' ids) first, then accepted ones,
    then by helpful votes, then oldest first."""
    return sorted(
        answers,
        key=lambda a: (
            a.user_id not in verified,
            not a.accepted,
            -a.helpful,
            a.created_at,
            a.answer_id,
        ),
    )


class QaBoard:
    def __init__(self) -> None:
        self.questions: dict[str, QuestionState] = {}
        self.answers: dict[str, AnswerState] = {}
        self.product_questions: dict[str, set[str]] = {}

    # --- reads ----------------------------------------------------------------------------------

    def visible_question(self, question_id: str) -> QuestionState | None:
        question = self.questions.get(question_id)
        return None if question is None or question.hidden else question

    def visible_answer(self, answer_id: str) -> AnswerState | None:
        """The answer if it and its question are visible."""
        answer = self.answers.get(answer_id)
        if answer is None or answer.hidden or self.visible_question(answer.question_id) is None:
            return None
        return answer

    def questions_of_product(self, product_id: str) -> list[QuestionState]:
        """The product's visible questions, newest first."""
        found = (self.questions[q] for q in self.product_questions.get(product_id, ()))
        return sorted((q for q in found if not q.hidden), key=lambda q: q.sort_key)

    # --- applying events (the graph drops events about erased users before they get here) -----

    def apply(self, event: Event) -> None:
        p = event.payload
        if isinstance(event, QuestionAsked):
            if p.question_id not in self.questions:
                self.questions[p.question_id] = QuestionState(
                    question_id=p.question_id,
                    product_id=p.product_id,
                    user_id=p.user_id,
                    text=p.text,
                    created_at=event.occurred_at,
                )
                self.product_questions.setdefault(p.product_id, set()).add(p.question_id)
        elif isinstance(event, AnswerPosted):
            question = self.questions.get(p.question_id)
            # an answer to an unknown question: its asker was erased (or it never existed)
            if question is not None and p.answer_id not in self.answers:
                answer = AnswerState(
                    answer_id=p.answer_id,
                    question_id=p.question_id,
                    product_id=question.product_id,
                    user_id=p.user_id,
                    text=p.text,
                    created_at=event.occurred_at,
                )
                self.answers[p.answer_id] = question.answers[p.answer_id] = answer
        elif isinstance(event, AnswerVoted):
            answer = self.answers.get(p.answer_id)
            if answer is not None:
                previous = answer.votes.get(p.user_id)
                if previous is None or stamp(event) > previous[1]:
                    answer.votes[p.user_id] = (p.helpful, stamp(event))
        elif isinstance(event, AnswerAccepted):
            answer = self.answers.get(p.answer_id)
            if answer is not None:
                answer.accepted = True
        elif isinstance(event, QaModerated):
            target = (self.questions if p.target == "question" else self.answers).get(p.target_id)
            if target is not None:
                target.moderation.apply(event)

    def erase(self, user_id: str) -> None:
        for question in [q for q in self.questions.values() if q.user_id == user_id]:
            self._drop_question(question)
        for answer in [a for a in self.answers.values() if a.user_id == user_id]:
            self._drop_answer(answer)
        for answer in self.answers.values():
            answer.votes.pop(user_id, None)

    def _drop_question(self, question: QuestionState) -> None:
        for answer in list(question.answers.values()):
            self._drop_answer(answer)
        del self.questions[question.question_id]
        ids = self.product_questions.get(question.product_id)
        if ids is not None:
            ids.discard(question.question_id)
            if not ids:
                del self.product_questions[question.product_id]

    def _drop_answer(self, answer: AnswerState) -> None:
        self.answers.pop(answer.answer_id, None)
        question = self.questions.get(answer.question_id)
        if question is not None:
            question.answers.pop(answer.answer_id, None)
