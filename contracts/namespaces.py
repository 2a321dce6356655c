"""Which Redis namespace is live: the pointer that ``socialproof replay rebuild --switch`` moves.

The hash ``socialproof:<base>:namespaces`` holds (``<base>`` is the configured
``SOCIALPROOF_REDIS_NAMESPACE``, so deployments sharing a Redis keep separate pointers):

- ``active``: the namespace readers (the notifier) serve and live workers write. Absent: the
  configured ``SOCIALPROOF_REDIS_NAMESPACE``.
- ``shadow`` (only during a rebuild's hand-over): a namespace live workers *also* write, so that
  a rebuilt namespace stays complete from the moment its own replay caught up until the switch.
- ``switched_at`` / ``previous``: when the last switch happened and from which namespace.

Moving ``active`` is one HSET: every read sees either the old namespace or the new one, whole.
Writers may write a namespace twice (active and shadow): the store's writes are idempotent facts.
"""

from __future__ import annotations

from dataclasses import dataclass


def pointer_key(base: str) -> str:
    """Outside every namespace, so dropping a namespace never drops the pointer."""
    return f"socialproof:{base}:namespaces"


@dataclass(frozen=True)
class Namespaces:
    active: str
    shadow: str | None = None

    @property
    def written(self) -> tuple[str, ...]:
        """Where live workers write: the active namespace, and the shadow during a hand-over."""
        return (self.active,) if not self.shadow or self.shadow == self.active else (
            self.active, self.shadow)


def parse(raw: dict[str, str] | None, default: str) -> Namespaces:
    raw = raw or {}
    return Namespaces(active=raw.get("active") or default, shadow=raw.get("shadow") or None)
