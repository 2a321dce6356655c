"""The social service's settings: its port, the shop's privacy defaults, the limits of questions
and answers, and the referral links shares answer with."""

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
    share_links_per_hour: int = Field(
        default=30,
        ge=1,
        description="shares (each a new referral link) one user may create per rolling hour "
        "(then 429)",
    )
    storefront_url: str = Field(
        default="http://127.0.0.1:8004/demo",
        pattern=r"^https?://\S+$",
        description="the storefront page a share's referral link opens, `?ref=<link token>` "
        "added; `{product_id}` in it is replaced by the shared product (default: the notifier's "
        "demo storefront)",
    )
