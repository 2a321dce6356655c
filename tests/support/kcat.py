"""Running kcat (Debian package ``kcat``: kcat 1.7.1 on the system librdkafka, 2.0.2 on bookworm),
the engineers' Kafka tool, as an engineer would: the plain binary, no socialproof code on the
producing or consuming side. Debian's kcat speaks to Apache Kafka 4.4.0 as it is
(``tests/integration/test_kcat.py`` proves metadata, produce and consume against the session
broker).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: kcat's own client-side limit on one record (librdkafka's default is 1,000,000 bytes), so a
#: record over a topic's max.message.bytes reaches the broker and gets the broker's answer
MESSAGE_MAX_BYTES = 8_000_000


def binary() -> str:
    found = shutil.which("kcat")
    assert found, "kcat is not installed (Debian package kcat; `make test` installs it)"
    return found


def run(*args: str, input: bytes | None = None, timeout: float = 30
        ) -> subprocess.CompletedProcess[bytes]:
    """``kcat <args>``: its exit status, stdout and stderr as bytes (nothing checked)."""
    return subprocess.run([binary(), *args], input=input, capture_output=True, timeout=timeout)


def produce(bootstrap: str, topic: str, key: str, value_file: Path, check: bool = True
            ) -> subprocess.CompletedProcess[bytes]:
    """One record whose value is the file's bytes, exactly (kcat sends a file as one message).
    kcat exits non-zero when the broker refuses the record; with ``check`` that fails the test."""
    done = run("-P", "-b", bootstrap, "-t", topic, "-k", key,
               "-X", f"message.max.bytes={MESSAGE_MAX_BYTES}", str(value_file))
    if check:
        assert done.returncode == 0, f"kcat failed: {done.stderr.decode(errors='replace')[-2000:]}"
    return done
