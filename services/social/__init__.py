"""The social service: friendships, reviews, shares and privacy settings (HTTP API)."""
