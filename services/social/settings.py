"""The social service's settings: its port, the shop's privacy defaults, and the limits of
questions and answers."""

from __future__ import annotations

from pydantic import Field

from socialproof.settings import PrivacyDefaults, port_field


class SocialSettings(PrivacyDefaults):
    social_port: int = port_field("social")  # type: ignore[assignment]
    qa_posts_per_hour: int = Field(
        default=10,
        ge=1,
        description="questions and answers one user may post per rolling hour (then 429)",
    )
    qa_reports_to_hide: int = Field(
        default=3,
        ge=1,
        description="reports from distinct users that hide a question or an answer",
    )
