"""The social service's settings: its port and the shop's privacy defaults."""

from __future__ import annotations

from socialproof.settings import PrivacyDefaults, port_field


class SocialSettings(PrivacyDefaults):
    social_port: int = port_field("social")  # type: ignore[assignment]
