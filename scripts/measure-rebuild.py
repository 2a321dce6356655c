"""Measures `socialproof replay rebuild` on N events (issue 6's figure) on a private embedded
broker and redis-server, so nothing else is disturbed.

    .venv/bin/python scripts/measure-rebuild.py 1000000

Produces N load-generator events (10,000 users, 1,000 products, 30 friends on average), then
runs the real command (`socialproof replay rebuild --yes --json`) and prints its summary: the
rate includes starting the replay worker and joining its consumer group.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer

from contracts import codec
from contracts.topics import topic_for
from socialproof.kafka import ensure_topics, producer_config, topic_name
from socialproof.processes import free_port
from socialproof.settings import Settings
from tools.devstack import embedded_broker, redis_server, wait_for_broker, wait_for_redis
from tools.loadgen import LoadConfig, LoadGenerator

ROOT = Path(__file__).resolve().parent.parent
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
work = Path(tempfile.mkdtemp(prefix="measure-rebuild-"))
bp, rp = free_port(), free_port()
broker = embedded_broker(bp, work / "kafka", echo=False, log_path=work / "broker.log").start()
redis = redis_server(rp, work / "redis", echo=False, log_path=work / "redis.log").start()
try:
    bootstrap, url = f"127.0.0.1:{bp}", f"redis://127.0.0.1:{rp}/0"
    wait_for_broker(bootstrap)
    wait_for_redis(url)
    settings = Settings(kafka_bootstrap_servers=bootstrap, redis_url=url)
    ensure_topics(settings)
    gen = LoadGenerator(LoadConfig(seed=1, users=10_000, products=1_000, mean_friends=30))
    p = Producer(
        {**producer_config(settings, "measure"), "linger.ms": 20, "batch.num.messages": 10000}
    )
    t = time.time()
    n = 0

    def events():
        yield from gen.setup_events()
        yield from gen.activity_events(N)

    for e in events():
        if n >= N:
            break
        topic = topic_for(e)
        while True:
            try:
                p.produce(topic_name(settings, topic), key=topic.key_of(e).encode(), value=codec.encode(e))
                break
            except BufferError:
                p.poll(0.1)
        n += 1
        if n % 50000 == 0:
            p.poll(0)
    p.flush(120)
    print(f"produced {n} events in {time.time() - t:.1f}s", flush=True)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REDIS_URL": url,
        "SOCIALPROOF_SERVICE_TOKEN": "x" * 20,
        "SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "SOCIALPROOF_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    }
    t = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "cli", "replay", "rebuild", "--yes", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    print("rebuild wall", f"{time.time() - t:.1f}s", "rc", r.returncode)
    print(r.stdout[-1000:])
    print(r.stderr[-2000:])
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout)
finally:
    redis.stop()
    broker.stop()
    shutil.rmtree(work, ignore_errors=True)
