"""The benchmark's baseline: the same worker, but each event applied with its own awaited Redis
call (the way Faust's examples process a stream). Run only by ``make bench``."""

from __future__ import annotations

from services.counters.app import run_worker
from services.counters.settings import CountersSettings

if __name__ == "__main__":
    run_worker(CountersSettings(), per_event=True)
