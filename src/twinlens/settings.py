"""Service settings: one pydantic-settings object, every field overridable as TWINLENS_<FIELD>.

Defaults give the embedded single-machine setup (SQLite + blobs under the data directory,
an in-process worker). `env="production"` refuses defaults that are only safe on a
developer's machine.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The key `twinlens demo` creates; fine on a laptop, refused in production.
DEMO_ADMIN_KEY = "tl_demo_admin_key_not_for_production"
MIN_PRODUCTION_KEY_CHARS = 32
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class UnsafeSettingsError(ValueError):
    """A setting that is only acceptable in development was used with env=production."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWINLENS_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=lambda: Path(".twinlens"))
    # Empty means "a SQLite file under data_dir" (see `resolved_database_url`).
    database_url: str | None = None
    # None: jobs run on an in-process worker thread. Set (redis://...): Celery workers.
    broker_url: str | None = None
    blob_dir: Path | None = None
    # Optional key ensured at startup with admin scope (containers, scripted setups).
    bootstrap_admin_key: SecretStr | None = None
    bootstrap_tenant: str = "default"

    # -- limits -------------------------------------------------------------------------
    max_upload_bytes: int = 20 * 1024 * 1024
    # All images of one job together (a job of several images; each stays <= max_upload_bytes).
    max_images_total_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_text_chars: int = 20_000
    max_wait_seconds: float = 30.0
    max_metadata_bytes: int = 16 * 1024
    page_size_limit: int = 100

    # -- outbound requests --------------------------------------------------------------
    # URL image inputs and webhooks refuse private, loopback and link-local addresses
    # unless these are set (an intranet deployment may need them).
    allow_private_urls: bool = False
    allow_private_webhooks: bool = False
    url_fetch_timeout: float = 10.0
    url_fetch_max_redirects: int = 3

    # -- jobs and retention -------------------------------------------------------------
    retention_days: float | None = 30.0
    job_max_attempts: int = 3
    # A job `running` this long is presumed lost with its worker and is re-queued.
    job_stale_after_seconds: float = 600.0
    # -- workers and dynamic batching -------------------------------------------------------
    # A worker that takes a job also claims other queued jobs of the same model version, up
    # to batch_max_size, waiting at most batch_max_delay_ms for the batch to fill.
    batch_max_size: int = 16
    batch_max_delay_ms: float = 10.0
    # One task keeps pulling further batches of its model for at most this long, preparing
    # the next batch (decode, OCR, tokenise) on threads while the model runs this one.
    batch_drain_seconds: float = 20.0
    prepare_threads: int = 2
    # Celery on Redis: a hard task limit below the broker's visibility timeout, so a message
    # is never handed to a second worker while the first is still legitimately on it.
    task_time_limit_seconds: float = 300.0
    # Training runs (the `training` queue) get their own, much longer limit. Redis keeps one
    # set of unacknowledged messages for every queue and any worker may hand one back once
    # the visibility timeout passes, so every worker of a fleet that serves the training
    # queue needs a visibility timeout above this limit (checked below). A long timeout costs
    # predictions nothing: the sweeper, not redelivery, recovers their lost jobs.
    training_time_limit_seconds: float = 6 * 3600.0
    broker_visibility_timeout_seconds: float = 7 * 3600.0
    # A run still `running` this long after the training limit lost its worker; it is failed
    # (not retried: a second attempt could race the first for the output folder).
    training_stale_grace_seconds: float = 600.0
    # How often one worker of the fleet looks for lost work: dead workers' jobs, jobs the
    # broker never got, due webhooks. A dead worker's jobs wait at most its heartbeat TTL
    # plus this interval before they are queued again.
    sweep_interval_seconds: float = 10.0
    # Every worker process refreshes a heartbeat key in the broker's Redis each interval; the
    # key lives `ttl` seconds, so a process that stops (SIGKILL, out of memory, a lost
    # machine) is known dead once it lapses, and the jobs it held are queued again.
    worker_heartbeat_interval_seconds: float = Field(5.0, gt=0)
    worker_heartbeat_ttl_seconds: float = Field(20.0, gt=0)
    # Prometheus metrics of a Celery worker (batch sizes, stage timings, jobs finished) on
    # this port; 0 turns them off. Loopback only unless the host says otherwise.
    worker_metrics_port: int = Field(9464, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # torch threads per worker process; 1 suits several processes sharing a CPU.
    worker_torch_threads: int | None = None
    # What runs a model's network in workers: torch, or onnx (the bundle's ONNX graph on
    # onnxruntime, see docs/export.md; a bundle without one falls back to torch with a warning).
    runtime: Literal["torch", "onnx"] = "torch"
    # Which jobs get an explanation (heatmaps, word weights; docs/explanations.md): review =
    # those decide() marks needs_review and those asked with ?explain=true; requested =
    # only the asked ones; all = every job.
    explain: Literal["review", "requested", "all"] = "review"
    # Integrated-gradients steps per text field and head (more: smoother, slower).
    explain_steps: int = Field(16, ge=2, le=256)
    # Zero-shot answers (a plugin with label descriptions and no active model); false: none,
    # such jobs get 409 until a trained model is active (a deployment that wants no answer
    # from a model never trained on its labelled cases).
    zero_shot: bool = True
    # Generated samples each zero-shot head's temperature is fitted on, once per plugin
    # version (cached under data_dir/zero-shot); 0 keeps the fixed tempering. A local
    # CLIP-style model folder adds the photo as evidence (docs/explanations.md).
    zero_shot_calibration_rows: int = Field(60, ge=0, le=5000)
    zero_shot_clip_model: str | None = None
    # -- bulk scoring batches (POST /v1/plugins/{name}/batches, docs/bulk.md) ----------------
    # The uploaded JSONL/CSV file's size and row limits; rows per model call; how long one
    # worker task scores a batch before handing it back to the queue (at most half the task
    # time limit), so predictions queued behind a big file are not held up for its length.
    bulk_max_upload_bytes: int = Field(16 * 1024 * 1024, ge=1)
    bulk_max_rows: int = Field(100_000, ge=1)
    bulk_micro_batch_size: int = Field(32, ge=1, le=1024)
    bulk_slice_seconds: float = Field(60.0, gt=0)

    # -- webhooks -----------------------------------------------------------------------
    webhook_max_attempts: int = 8
    webhook_retry_base_seconds: float = 2.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_timeout_seconds: float = 10.0

    # -- helpdesk connectors (docs/connectors/) -------------------------------------------
    # Calls to a helpdesk and its attachment downloads refuse private and loopback
    # addresses unless this is set (a self-hosted helpdesk on an intranet).
    allow_private_helpdesks: bool = False
    # A signed Zendesk webhook whose timestamp is further than this from now is refused.
    connector_signature_tolerance_seconds: float = Field(300.0, gt=0)
    connector_timeout_seconds: float = Field(15.0, gt=0)
    # A call answered 429 waits its Retry-After (at most the cap; a longer one fails the step,
    # which the sweep takes up again); a 5xx or a lost connection is retried with backoff.
    connector_max_retries: int = Field(4, ge=0, le=10)
    connector_retry_base_seconds: float = Field(0.5, ge=0)
    connector_max_retry_after_seconds: float = Field(60.0, ge=0)
    # A ticket's step (fetch, write-back) not done this long after it began is taken up again
    # by the sweep, at most this many times in all.
    connector_stale_after_seconds: float = Field(300.0, gt=0)
    connector_max_attempts: int = Field(3, ge=1)

    # -- rate limits ----------------------------------------------------------------------
    # Token buckets per API key and per tenant: each request spends a token from both, and
    # each refills at its rate up to its burst. Kept in Redis when broker_url is redis://
    # (one budget across every API process), in the process otherwise. Far above what one
    # integration sends; they stop a runaway loop, not a busy client.
    rate_limit_key_per_second: float = Field(20.0, gt=0)
    rate_limit_key_burst: int = Field(40, ge=1)
    rate_limit_tenant_per_second: float = Field(50.0, gt=0)
    rate_limit_tenant_burst: int = Field(100, ge=1)

    # -- operator endpoints ---------------------------------------------------------------
    # Bearer token for /metrics and the details of /readyz (an admin API key works too);
    # without either, /metrics answers 401 and /readyz only ready or not.
    metrics_token: SecretStr | None = None

    # -- models -------------------------------------------------------------------------
    # Bundle directories registered (and activated if none is active) at startup.
    model_bundle_dirs: list[Path] = Field(default_factory=list)

    # -- admin paths and secrets ------------------------------------------------------------
    # The folders an API request may name: a model registration's bundle_path (model roots)
    # and a training run's data_path (data roots) and output_dir (output roots). Empty means
    # data_dir/models for bundles and training output, data_dir/datasets for data. From the
    # environment as JSON lists: TWINLENS_MODEL_ROOTS='["/srv/twinlens/models"]'.
    model_roots: list[Path] = Field(default_factory=list)
    data_roots: list[Path] = Field(default_factory=list)
    output_roots: list[Path] = Field(default_factory=list)
    # Fernet key(s) sealing tenants' webhook signing secrets at rest, comma-separated: the
    # first seals, every one opens (put a new key first to replace the old). Required with
    # env=production; in development a key is generated into data_dir/secrets.key on first use.
    secrets_key: SecretStr | None = None
    # How long a rotated-out webhook secret keeps signing deliveries, unless the rotation says.
    webhook_secret_overlap_seconds: float = Field(24 * 3600.0, ge=0, le=30 * 24 * 3600.0)

    # -- the learning loop (docs/learning-loop.md) -----------------------------------------
    # Share of corrected jobs reserved automatically as the holdout (never trained on).
    learning_holdout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    # The evaluation gate's defaults; a promotion request may override each.
    gate_primary_metric: Literal["macro_f1", "accuracy"] = "macro_f1"
    gate_task: str | None = None  # None: the first multiclass task of the label schema
    gate_min_metric: float = Field(0.0, ge=0.0, le=1.0)  # the absolute floor
    gate_min_delta: float = Field(0.0, ge=-1.0, le=1.0)  # over the champion's metric
    gate_max_recall_drop: float = Field(0.05, ge=0.0, le=1.0)  # per class, against the champion
    gate_max_ece: float = Field(0.15, ge=0.0, le=1.0)
    gate_max_latency_factor: float = Field(1.5, gt=0.0)  # candidate p95 / champion p95

    # -- similar cases and search (docs/search.md) ------------------------------------------
    # A tenant's vectors of one model version and kind are searched exactly (numpy over the
    # SQL rows) up to this many; from there a worker keeps a FAISS index for them.
    search_exact_max_rows: int = Field(20_000, ge=1)
    # The index is rebuilt once this many vectors were stored after it (they are searched
    # exactly until then).
    search_rebuild_after_rows: int = Field(1_000, ge=1)
    search_index_dir: Path | None = None  # default data_dir/search-indexes (shared by API and workers)
    # How long POST /v1/search waits for a worker to embed a text or image query.
    search_query_timeout_seconds: float = Field(20.0, gt=0)
    search_max_k: int = Field(100, ge=1)
    # A local open_clip / Hugging Face CLIP folder `twinlens align` may start from (never downloaded).
    clip_path: Path | None = None

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> "Settings":
        if self.env != "production":
            return self
        key = self.bootstrap_admin_key.get_secret_value() if self.bootstrap_admin_key else None
        if key == DEMO_ADMIN_KEY:
            raise UnsafeSettingsError("TWINLENS_BOOTSTRAP_ADMIN_KEY is the demo key; refused with env=production")
        if key is not None and len(key) < MIN_PRODUCTION_KEY_CHARS:
            raise UnsafeSettingsError(
                f"TWINLENS_BOOTSTRAP_ADMIN_KEY must be at least {MIN_PRODUCTION_KEY_CHARS} characters in production"
            )
        return self

    @model_validator(mode="after")
    def _metrics_token_long_enough_in_production(self) -> "Settings":
        token = self.metrics_token.get_secret_value() if self.metrics_token else None
        if self.env == "production" and token is not None and len(token) < MIN_PRODUCTION_KEY_CHARS:
            raise UnsafeSettingsError(f"TWINLENS_METRICS_TOKEN must be at least {MIN_PRODUCTION_KEY_CHARS} characters in production")
        return self

    @model_validator(mode="after")
    def _time_limits_fit(self) -> "Settings":
        if self.task_time_limit_seconds >= self.broker_visibility_timeout_seconds:
            raise ValueError("task_time_limit_seconds must be below broker_visibility_timeout_seconds")
        if self.training_time_limit_seconds >= self.broker_visibility_timeout_seconds:
            raise ValueError("training_time_limit_seconds must be below broker_visibility_timeout_seconds "
                             "(a worker serving the training queue would see its run handed to another)")
        if self.batch_drain_seconds >= self.task_time_limit_seconds:
            raise ValueError("batch_drain_seconds must be below task_time_limit_seconds")
        return self

    @model_validator(mode="after")
    def _secrets_key_usable(self) -> "Settings":
        if self.secrets_key is None:
            if self.env == "production":
                raise UnsafeSettingsError("TWINLENS_SECRETS_KEY is required with env=production (a Fernet key: "
                                          "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')")
            return self
        if not self.secrets_key_list:
            raise ValueError("TWINLENS_SECRETS_KEY is set but holds no key")
        for number, key in enumerate(self.secrets_key_list, start=1):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(f"TWINLENS_SECRETS_KEY: key {number} is not a Fernet key (32 url-safe base64 bytes)") from None
        return self

    @property
    def secrets_key_list(self) -> list[str]:
        """The configured Fernet keys, sealing key first; empty when none is configured."""
        raw = self.secrets_key.get_secret_value() if self.secrets_key else ""
        return [key.strip() for key in raw.split(",") if key.strip()]

    @property
    def secrets_key_file(self) -> Path:
        """Where development keeps the key it generated (no TWINLENS_SECRETS_KEY)."""
        return self.data_dir / "secrets.key"

    @property
    def resolved_search_index_dir(self) -> Path:
        return self.search_index_dir or self.data_dir / "search-indexes"

    @property
    def resolved_model_roots(self) -> list[Path]:
        return self.model_roots or [self.data_dir / "models"]

    @property
    def resolved_data_roots(self) -> list[Path]:
        return self.data_roots or [self.data_dir / "datasets"]

    @property
    def resolved_output_roots(self) -> list[Path]:
        return self.output_roots or [self.data_dir / "models"]

    @model_validator(mode="after")
    def _heartbeat_outlives_its_interval(self) -> "Settings":
        # Two missed beats in a row, not one slow Redis round trip, should declare a worker dead.
        if self.worker_heartbeat_ttl_seconds < 2 * self.worker_heartbeat_interval_seconds:
            raise ValueError("worker_heartbeat_ttl_seconds must be at least twice worker_heartbeat_interval_seconds")
        return self

    @model_validator(mode="after")
    def _worker_metrics_off_loopback_need_a_token(self) -> "Settings":
        exposed = self.worker_metrics_port and self.worker_metrics_host not in LOOPBACK_HOSTS
        if self.env == "production" and exposed and self.metrics_token is None:
            raise UnsafeSettingsError("TWINLENS_WORKER_METRICS_HOST off loopback needs TWINLENS_METRICS_TOKEN with env=production "
                                      "(or TWINLENS_WORKER_METRICS_PORT=0 to turn worker metrics off)")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'twinlens.db').resolve()}"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"

    @property
    def embedded_worker(self) -> bool:
        return not self.broker_url

    @property
    def max_request_bytes(self) -> int:
        """Whole-request ceiling: the image as base64 (4/3) plus texts and form overhead."""
        images = max(self.max_upload_bytes, self.max_images_total_bytes)
        return images * 4 // 3 + self.max_text_chars * 4 + self.max_metadata_bytes + 64 * 1024

    @property
    def max_bulk_request_bytes(self) -> int:
        """Ceiling of a batch upload request: the file plus the form's overhead."""
        return self.bulk_max_upload_bytes + 64 * 1024


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
