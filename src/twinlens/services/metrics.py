"""Prometheus metrics shared by the API and the workers (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("twinlens_http_requests_total", "HTTP requests", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("twinlens_http_request_seconds", "HTTP request latency", ["method", "route"])
JOB_STAGE_SECONDS = Histogram(
    "twinlens_job_stage_seconds",
    "Time a job spends per stage (queue_wait, load_inputs, prepare, predict, decide, write, total)",
    ["plugin", "stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
JOBS_FINISHED = Counter("twinlens_jobs_finished_total", "Jobs finished", ["plugin", "status"])
BATCH_SIZE = Histogram("twinlens_batch_size", "Jobs per model call", ["plugin"], buckets=(1, 2, 4, 8, 16, 32, 64, 128))
QUEUE_DEPTH = Gauge("twinlens_jobs", "Jobs by status (queued = queue depth), read at scrape time", ["status"])
WEBHOOK_ATTEMPTS = Counter("twinlens_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])
JOBS_RECOVERED = Counter(
    "twinlens_jobs_recovered_total",
    "Running jobs queued again: their worker's heartbeat lapsed or no longer held them (lost_worker), "
    "or they ran past job_stale_after_seconds (stale)",
    ["reason"],
)
OUTBOX_PUBLISHED = Counter("twinlens_outbox_published_total", "Queued jobs the broker never got, published by the sweep")
