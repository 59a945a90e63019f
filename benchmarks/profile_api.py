"""Where the API process spends its time on one job, without HTTP framing or a model.

    python benchmarks/profile_api.py [--jobs 200] [--html profile.html]

Against a fresh PostgreSQL database (127.0.0.1:5432) and a private redis-server as the
broker (no worker consumes the messages), it runs what `POST /v1/plugins/generic/jobs`
runs per job: authenticate the key, spend the rate-limit tokens, check and store the
inputs (a 640x480 JPEG and a text), commit, publish to the broker and record the publish
for the outbox, render the answer. Prints the mean milliseconds per job and per step, and
pyinstrument's profile of the whole loop (needs `pip install pyinstrument`, the `dev`
extra). Figures only: no thresholds are asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "service"))
from fleet import RedisServer
from service import job_inputs  # benchmarks/service.py's photos and texts (after the sys.path lines)

PG = "postgresql://postgres@127.0.0.1:5432"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--html", default=None, help="also write pyinstrument's HTML report here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="twinlens-profile-"))
    name = f"twinlens_profile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    redis = RedisServer(root / "redis").start()
    try:
        run(root, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", redis.url, args)
    finally:
        redis.stop()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(root: Path, database_url: str, broker_url: str, args) -> None:
    from pyinstrument import Profiler

    from twinlens import queue
    from twinlens.blobs import LocalBlobStore
    from twinlens.contract.registry import get_plugin
    from twinlens.db.migrate import upgrade
    from twinlens.db.models import ModelVersion
    from twinlens.db.session import Database
    from twinlens.services import keys
    from twinlens.services.inputs import SubmittedInputs
    from twinlens.services.rate_limits import RateLimiter
    from twinlens.services.submission import JobSubmission, accept_job
    from twinlens.settings import Settings

    settings = Settings(data_dir=root, database_url=database_url, broker_url=broker_url)
    db = Database(database_url)
    upgrade(db.engine)
    blobs = LocalBlobStore(root / "blobs")
    queue.configure(broker_url)
    plugin = get_plugin("generic")
    with db.session() as session:
        # A model row is all submission needs (it names the version; no worker loads it).
        session.add(ModelVersion(plugin="generic", version="generic@profile", bundle_path=str(root), content_hash="x" * 64,
                                 label_schema={"tasks": []}, is_active=True))
        _, key = keys.create_key(session, "profile", admin=False)
    limiter = RateLimiter.from_settings(settings.model_copy(update={"rate_limit_key_per_second": 1e6, "rate_limit_tenant_per_second": 1e6,
                                                                    "rate_limit_key_burst": 10**6, "rate_limit_tenant_burst": 10**6}))
    inputs = job_inputs(args.jobs)
    steps: dict[str, float] = defaultdict(float)

    def one(item) -> None:
        started = time.perf_counter()
        with db.session() as session:
            principal = keys.authenticate(session, key)
            steps["authenticate"] += time.perf_counter() - started
            mark = time.perf_counter()
            limiter.check(principal)
            steps["rate limit"] += time.perf_counter() - mark
            mark = time.perf_counter()
            submitted = SubmittedInputs(image_bytes=item[0], image_media_type="image/jpeg", texts={"text": item[1]})
            accept_job(session, blobs, settings, principal, JobSubmission(plugin=plugin, inputs=submitted))
            steps["accept (check, store, commit, publish, render)"] += time.perf_counter() - mark
        steps["total"] += time.perf_counter() - started

    for item in inputs[:10]:  # warm-up: connections, imports
        one(item)
    steps.clear()
    cpu = time.process_time()
    for item in inputs:  # timed without the profiler, whose sampling costs time of its own
        one(item)
    cpu = time.process_time() - cpu
    print(f"{args.jobs} jobs, API work without HTTP framing (PostgreSQL, Redis broker):")
    for step, seconds in steps.items():
        print(f"  {step:<50} {seconds / args.jobs * 1000:7.2f} ms/job (wall)")
    print(f"  {'CPU time of this process':<50} {cpu / args.jobs * 1000:7.2f} ms/job")
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for item in inputs:
        one(item)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    if args.html:
        Path(args.html).write_text(profiler.output_html())
    limiter.close()
    db.dispose()


if __name__ == "__main__":
    main()
