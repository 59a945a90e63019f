"""Service throughput and latency, REST -> Redis -> worker -> PostgreSQL, on this machine.

    python benchmarks/service.py [--jobs 160] [--image-encoder resnet18] [--image-size 224]
                                 [--batch 16] [--delay-ms 10] [--torch-threads 1]

Starts a private redis-server, the API (`twinlens serve`) and one `twinlens worker` on
loopback against a fresh PostgreSQL database (127.0.0.1:5432), with the generic plugin's
default model (resnet18 + the pretrained MiniLM) trained for one epoch on its sample set.
Prints: preprocessing and raw predictor throughput, end-to-end throughput with batching on
and off, p50/p95/p99 latency at concurrency 1, 8 and 32, the API overhead per job at
concurrency 1 (each POST timed alone: the time the API process spends on a job; with the
API's own server-side mean from /metrics) twice, once with the worker running beside the
API (it starts on the job while the API is still answering, on the same cores) and once
with the worker stopped (the API's own time, excluding the model), the worker's mean time
per stage (from its /metrics), the average batch size, and the ratios batching-on/off and
end-to-end/raw. Figures only: no thresholds are asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psycopg
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "service"))
from fleet import Fleet, RedisServer, free_port  # noqa: E402  (the same harness the fleet tests use)

PG = "postgresql://postgres@127.0.0.1:5432"


def photo_jpeg(seed: int, size=(640, 480)) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize(size, Image.BICUBIC).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def job_inputs(count: int) -> list[tuple[bytes, str]]:
    return [(photo_jpeg(i % 16), f"ticket {i}: the screen shows a small red square, please advise") for i in range(count)]


def train_bundle(root: Path, args) -> Path:
    from twinlens.contract.registry import get_plugin
    from twinlens.contract.spec import ImageEncoderSpec
    from twinlens.engine.training import train_model

    plugin = get_plugin("generic")
    data = plugin.read_dataset(plugin.make_sample_dataset(root / "data", n=48, seed=0))
    spec = plugin.default_model_spec()
    spec = spec.model_copy(update={"image_encoder": ImageEncoderSpec(name=args.image_encoder, image_size=args.image_size)})
    config = plugin.training_defaults().model_copy(update={"epochs": 1, "progress": False})
    return train_model(plugin, data, out_dir=root / "bundle", spec=spec, config=config).bundle_dir


def raw_figures(bundle: Path, inputs, threads: int) -> tuple[float, dict[int, float]]:
    """Preprocessing (decode + resize + tokenise) and model-only predict throughput."""
    import torch

    from twinlens.contract.plugin import RawInput
    from twinlens.engine.predictor import Predictor
    from twinlens.contract.registry import get_plugin

    torch.set_num_threads(threads)
    plugin, predictor = get_plugin("generic"), Predictor.from_bundle(bundle)
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        encoded = list(pool.map(lambda item: predictor.preprocess(plugin.prepare(RawInput(image_bytes=item[0], texts={"text": item[1]}))), inputs))
    preprocess = len(inputs) / (time.perf_counter() - started)
    rates = {}
    for batch in (1, 8, 16, 32):
        predictor.predict_encoded(encoded[:batch])  # warm-up
        count = max(batch * 3, 24)
        subset = (encoded * 4)[:count]
        started = time.perf_counter()
        for start in range(0, count, batch):
            predictor.predict_encoded(subset[start : start + batch])
        rates[batch] = count / (time.perf_counter() - started)
    return preprocess, rates


def submit(client: httpx.Client, item, wait: float = 0.0) -> tuple[str, float, dict]:
    started = time.perf_counter()
    response = client.post("/v1/plugins/generic/jobs", params={"wait": wait} if wait else None,
                           files={"image": ("photo.jpg", item[0], "image/jpeg")}, data={"text": item[1]})
    seconds = time.perf_counter() - started
    response.raise_for_status()
    body = response.json()
    body["_app_seconds"] = app_seconds(response)
    return body["id"], seconds, body


def throughput(fleet: Fleet, inputs, concurrency: int = 16) -> float:
    """Jobs per second from the first submission to the last stored result."""
    started = time.perf_counter()
    with fleet.client() as client, ThreadPoolExecutor(concurrency) as pool:
        ids = [job_id for job_id, _, _ in pool.map(lambda item: submit(client, item), inputs)]
    wait_done(fleet, ids)
    return len(ids) / (time.perf_counter() - started)


def wait_done(fleet: Fleet, ids: list[str], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    url = fleet.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        while time.monotonic() < deadline:
            left = connection.execute("SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status IN ('queued','running')", (ids,)).fetchone()[0]
            if left == 0:
                return
            time.sleep(0.05)
    raise SystemExit(f"jobs did not finish in {timeout}s")


def latencies(fleet: Fleet, inputs, concurrency: int, count: int) -> list[float]:
    """Closed loop: each client submits with ?wait= and times until the answer holds the result."""
    work = [inputs[i % len(inputs)] for i in range(count)]
    with fleet.client() as client, ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda item: submit(client, item, wait=60), work))
    unfinished = [body["status"] for _, _, body in results if body["status"] != "succeeded"]
    if unfinished:
        raise SystemExit(f"{len(unfinished)} jobs did not finish within ?wait: {unfinished[:3]}")
    return [seconds for _, seconds, _ in results]


def api_overhead(fleet: Fleet, inputs, count: int, worker_running: bool = True) -> tuple[list[float], list[float], float]:
    """Concurrency 1, one job at a time: the POST (no wait) is timed alone and, with a worker
    running, the result awaited before the next. The worker starts on the job while the API
    is still answering, on the same two cores; with `worker_running` False (the worker is
    stopped) the API's own time is measured without that contention. Returns the client
    times, the service's own time per POST (its Server-Timing header: from the request's
    arrival in the app to its answer) and the route's server-side mean (/metrics)."""
    route = ("POST", "/v1/plugins/{name}/jobs")
    before = scrape(f"{fleet.url}/metrics", "twinlens_http_request_seconds", route)
    times, in_app = [], []
    with fleet.client() as client:
        for i in range(count):
            job_id, seconds, body = submit(client, inputs[i % len(inputs)])
            times.append(seconds)
            in_app.append(body["_app_seconds"])
            if worker_running:
                wait_done(fleet, [job_id])
    after = scrape(f"{fleet.url}/metrics", "twinlens_http_request_seconds", route)
    jobs = after["count"] - before["count"]
    return times, in_app, (after["sum"] - before["sum"]) / jobs if jobs else float("nan")


def print_overhead(condition: str, times: list[float], in_app: list[float], server_mean: float) -> None:
    print(f"API overhead per job at concurrency 1, {condition} ({len(times)} POSTs): in the service p50 "
          f"{percentile(in_app, 50):6.1f} ms  p95 {percentile(in_app, 95):6.1f} ms (target p50 <= 10 ms; "
          f"/metrics mean {server_mean * 1000:.1f} ms); client round trip p50 {percentile(times, 50):6.1f} ms  "
          f"p95 {percentile(times, 95):6.1f} ms")


def app_seconds(response: httpx.Response) -> float:
    """The service's `Server-Timing: app;dur=<ms>` in seconds."""
    timing = response.headers.get("server-timing", "")
    return float(timing.split("dur=")[1]) / 1000 if "dur=" in timing else float("nan")


def scrape(url: str, name: str, labels: tuple[str, ...]) -> dict[str, float]:
    """Sum and count of one histogram series (its label values in order) from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    from fleet import ADMIN_KEY

    text = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10).text
    found = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (f"{name}_sum", f"{name}_count") and tuple(sample.labels.values()) == labels:
                found[sample.name.rsplit("_", 1)[1]] = sample.value
    return found


def worker_stages(port: int) -> dict[str, float]:
    """The worker's mean seconds per job stage so far (its own /metrics)."""
    stages = {}
    for stage in ("queue_wait", "prepare", "predict", "decide", "total"):
        figures = scrape(f"http://127.0.0.1:{port}/metrics", "twinlens_job_stage_seconds", ("generic", stage))
        stages[stage] = figures["sum"] / figures["count"] if figures["count"] else float("nan")
    return stages


def batch_average(log: Path) -> float:
    text = log.read_text(errors="replace")
    tasks = re.findall(r"'succeeded': (\d+), 'failed': (\d+), 'skipped': \d+, 'batches': (\d+)", text)
    jobs = sum(int(s) + int(f) for s, f, _ in tasks)
    batches = sum(int(b) for _, _, b in tasks)
    return jobs / batches if batches else float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def run_fleet(root: Path, database_url: str, bundle: Path, args, batch: int, name: str):
    redis = RedisServer(root / f"redis-{name}").start()
    env = {"TWINLENS_BATCH_MAX_SIZE": str(batch), "TWINLENS_BATCH_MAX_DELAY_MS": str(args.delay_ms if batch > 1 else 0),
           "OMP_NUM_THREADS": str(args.torch_threads), "TWINLENS_JOB_STALE_AFTER_SECONDS": "600",
           "TWINLENS_TASK_TIME_LIMIT_SECONDS": "120", "TWINLENS_BROKER_VISIBILITY_TIMEOUT_SECONDS": "900",
           "TWINLENS_BATCH_DRAIN_SECONDS": "20", "TWINLENS_SWEEP_INTERVAL_SECONDS": "30",
           "TWINLENS_WORKER_METRICS_PORT": str(args.worker_metrics_port), "TWINLENS_EXPLAIN": args.explain,
           # One key sends every job as fast as it can: the default limits (20/s a key)
           # would measure the rate limiter, not the service.
           "TWINLENS_RATE_LIMIT_KEY_PER_SECOND": "100000", "TWINLENS_RATE_LIMIT_KEY_BURST": "100000",
           "TWINLENS_RATE_LIMIT_TENANT_PER_SECOND": "100000", "TWINLENS_RATE_LIMIT_TENANT_BURST": "100000"}
    fleet = Fleet(root / name, database_url, redis, extra_env=env)
    (root / name).mkdir(parents=True, exist_ok=True)
    fleet.start_api()
    with fleet.client() as client:
        response = client.post("/v1/models", json={"bundle_path": str(bundle), "activate": True})
        if response.status_code not in (201, 409):
            raise SystemExit(response.text)
    fleet.start_worker("bench", "predict.generic,webhooks")
    fleet.wait_worker_ready("bench")
    latencies(fleet, job_inputs(4), 1, 4)  # warm-up: the worker loads the model
    return fleet, redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=160)
    parser.add_argument("--image-encoder", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16, help="max batch size with batching on")
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--explain", default="requested", choices=["review", "requested", "all"],
                        help="the workers' TWINLENS_EXPLAIN (default requested: the raw predictor explains nothing "
                             "either; the service default, review, explains every needs_review job: "
                             "benchmarks/explanations.py measures that cost)")
    parser.add_argument("--overhead-jobs", type=int, default=24, help="jobs timed one at a time for the API overhead")
    parser.add_argument("--worker-metrics-port", type=int, default=free_port())
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = Path(tempfile.mkdtemp(prefix="twinlens-bench-"))
    inputs = job_inputs(args.jobs)
    print(f"machine: {os.cpu_count()} cores, load_avg_1m={os.getloadavg()[0]:.2f}; model: generic default "
          f"({args.image_encoder}@{args.image_size} + all-MiniLM-L6-v2, concat); torch threads per process: {args.torch_threads}; explanations: {args.explain}")
    bundle = train_bundle(root, args)
    preprocess, raw = raw_figures(bundle, inputs[:48], args.torch_threads)
    best = max(raw, key=raw.get)
    print(f"preprocessing (decode 640x480 JPEG + resize + tokenise, 2 threads): {preprocess:7.1f} samples/s")
    for batch, rate in raw.items():
        print(f"raw predictor, batch {batch:>2}:                                   {rate:7.1f} samples/s")
    name = f"twinlens_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        report(root, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", bundle, args, inputs, raw[best], best)
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(root, database_url, bundle, args, inputs, raw_best, best) -> None:
    figures = {}
    for label, batch in (("on", args.batch), ("off", 1)):
        fleet, redis = run_fleet(root, database_url, bundle, args, batch, f"batching-{label}")
        try:
            figures[label] = throughput(fleet, inputs)
            print(f"end-to-end throughput, batching {label:<3} (max batch {batch:>2}):        {figures[label]:7.1f} jobs/s")
            if label == "on":
                for concurrency, count in ((1, 16), (8, 48), (32, 96)):
                    values = latencies(fleet, inputs, concurrency, count)
                    print(f"latency at concurrency {concurrency:>2} ({count} jobs): p50 {percentile(values, 50):7.0f} ms  "
                          f"p95 {percentile(values, 95):7.0f} ms  p99 {percentile(values, 99):7.0f} ms")
                print(f"average batch size (batching on):                       {batch_average(fleet.root / 'worker-bench.log'):7.2f}")
                stages = worker_stages(args.worker_metrics_port)
                print("worker mean per job (s): " + ", ".join(f"{stage} {seconds:.4f}" for stage, seconds in stages.items())
                      + "  (predict and decide: per batch / per job as observed)")
                print_overhead("worker running beside it", *api_overhead(fleet, inputs, args.overhead_jobs))
                fleet.workers["bench"].terminate()  # the jobs below stay queued: the API alone
                fleet.workers["bench"].wait(60)
                print_overhead("worker stopped", *api_overhead(fleet, inputs, args.overhead_jobs, worker_running=False))
        finally:
            fleet.close()
            redis.stop()
    print(f"ratio batching on / off (end-to-end):                   {figures['on'] / figures['off']:7.2f}x")
    print(f"ratio end-to-end (batching on) / raw predictor (batch {best}): {figures['on'] / raw_best:7.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
