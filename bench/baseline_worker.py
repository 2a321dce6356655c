"""The benchmark's baseline: the same worker, but each event applied with its own awaited Redis
call (the way Faust's examples process a stream). Run only by ``make bench``."""

from __future__ import annotations

from services.social.processor.app import run_worker
from socialproof.settings import SocialSettings

if __name__ == "__main__":
    run_worker(SocialSettings(), per_event=True)
