"""The counters stream worker: reads every service's event topics and keeps the social-proof
counters in Redis (``socialproof worker``; its own Deployment, settings in ``settings.py``)."""
