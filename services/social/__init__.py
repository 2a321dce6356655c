"""The social service: friendships, reviews, shares and privacy settings (HTTP API), and the
stream processor (:mod:`services.social.processor`) that turns every event into counters."""
