"""Service commands: serve, db upgrade/check/current, keys create, demo.

`twinlens serve` is the main job. With no broker configured it runs the API and an
in-process worker (the same task code the Celery workers run) against the embedded
default (SQLite + blobs under the data directory); with TWINLENS_BROKER_URL set it only
serves, and workers run elsewhere.
"""

from __future__ import annotations

import io
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from twinlens.cli import app
from twinlens.cli.common import fail, user_errors
from twinlens.logging_setup import configure_logging, uvicorn_log_config
from twinlens.settings import Settings

db_app = typer.Typer(help="Database schema (Alembic migrations shipped in the package).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")

log = logging.getLogger(__name__)
DEMO_TENANT = "demo"


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValueError as exc:  # pydantic ValidationError and UnsafeSettingsError
        fail(str(exc))


def _database(settings: Settings, *, migrate: bool):
    from twinlens.db.migrate import upgrade
    from twinlens.db.session import Database

    database = Database(settings.resolved_database_url)
    if migrate:
        upgrade(database.engine)
        _seal_legacy_secrets(database, settings)
    return database


def _seal_legacy_secrets(database, settings: Settings) -> None:
    """Webhook secrets stored in clear before migration 0003 are sealed with the secrets key
    as soon as the schema allows it (the migration itself has no key)."""
    from twinlens.services.webhook_secrets import seal_legacy_secrets, secret_box

    with database.session() as session:
        sealed = seal_legacy_secrets(session, secret_box(settings))
    if sealed:
        log.info("sealed %d webhook secret(s) kept in clear before migration 0003", sealed)


# -- the running service ------------------------------------------------------------------
@dataclass
class EmbeddedService:
    """The API on a loopback (or given) socket, plus the in-process worker when no broker
    is configured. Used by `serve`, `demo` and the service tests."""

    settings: Settings
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "warning"
    database: Any = None
    worker: Any = None
    server: Any = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _socket: socket.socket | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def build(self, *, migrate: bool = True) -> "EmbeddedService":
        import uvicorn

        from twinlens.api.app import create_app
        from twinlens.blobs import LocalBlobStore

        self.database = self.database or _database(self.settings, migrate=migrate)
        blobs = LocalBlobStore(self.settings.resolved_blob_dir)
        if self.settings.embedded_worker:
            from twinlens.worker.context import WorkerContext
            from twinlens.worker.inprocess import InProcessWorker

            self.worker = InProcessWorker(WorkerContext.from_settings(self.settings, self.database, blobs))
        application = create_app(self.settings, db=self.database, blobs=blobs)
        self._socket = _bind(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        configure_logging(self.settings.env)  # before uvicorn's first line (JSON in production)
        self.server = uvicorn.Server(uvicorn.Config(application, log_level=self.log_level, lifespan="on",
                                                    log_config=uvicorn_log_config(self.settings.env)))
        return self

    def serve_forever(self) -> None:
        """Serve until SIGINT/SIGTERM, then stop gracefully: the server drains its
        requests and the worker finishes its current batch (so no job is left `running`)."""
        self.start()
        stopping = threading.Event()

        def request_stop(signum, frame) -> None:
            if stopping.is_set():  # a second Ctrl-C: stop waiting for open connections
                self.server.force_exit = True
            stopping.set()
            self.server.should_exit = True

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    def start(self, timeout: float = 60.0) -> "EmbeddedService":
        """Serve on a background thread; return once it accepts requests."""
        if self.worker is not None:
            self.worker.start()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.close()
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self.database is not None:
            self.database.dispose()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.listen(2048)
    return sock


# -- serve ------------------------------------------------------------------------------------
@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8000,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Overrides TWINLENS_DATA_DIR.")] = None,
    migrate: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before serving.")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the REST API (and, with no broker configured, the in-process worker)."""
    settings = _settings(data_dir=data_dir)
    service = EmbeddedService(settings, host=host, port=port, log_level=log_level).build(migrate=migrate)
    mode = "in-process worker" if settings.embedded_worker else f"workers via {settings.broker_url}"
    typer.echo(f"TwinLens API on {service.url} (docs: {service.url}/docs) with {mode}; database: {_safe_url(settings)}")
    service.serve_forever()


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


# -- db -------------------------------------------------------------------------------------
@db_app.command("upgrade")
@user_errors
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Apply migrations (creating the schema on an empty database)."""
    from twinlens.db.migrate import current_revision, upgrade
    from twinlens.db.session import Database

    settings = _settings()
    database = Database(settings.resolved_database_url)
    upgrade(database.engine, revision)
    if current_revision(database.engine) == _head_revision():
        _seal_legacy_secrets(database, settings)
    typer.echo(f"{_safe_url(settings)} is at revision {current_revision(database.engine)}")


def _head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    from twinlens.db.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@db_app.command("check")
@user_errors
def db_check() -> None:
    """Exit 1 if the database schema differs from the models (a migration is missing)."""
    from twinlens.db.migrate import schema_differences
    from twinlens.db.session import Database

    differences = schema_differences(Database(_settings().resolved_database_url).engine)
    for difference in differences:
        typer.echo(f"  {difference}")
    if differences:
        fail(f"{len(differences)} difference(s) between the models and the database", code=1)
    typer.echo("models and database schema agree")


# -- keys -------------------------------------------------------------------------------------
@keys_app.command("create")
@user_errors
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name (created if new).")],
    admin: Annotated[bool, typer.Option("--admin", help="Tenant admin: its own tenant's keys, models and training.")] = False,
    platform_admin: Annotated[bool, typer.Option(
        "--platform-admin", help="Platform admin: global models and every tenant's keys and models (no HTTP request "
                                 "can make one).")] = False,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from twinlens.services import keys
    from twinlens.services.webhook_secrets import current_secret, secret_box

    settings = _settings()
    database = _database(settings, migrate=False)
    with database.session() as session:
        record, plain = keys.create_key(session, tenant, admin=admin, platform_admin=platform_admin, name=name)
        secret = current_secret(session, record.tenant, secret_box(settings))
    role = "platform admin" if platform_admin else "admin" if admin else "standard"
    typer.echo(plain)
    typer.echo(f"(tenant {tenant}, {role} key {record.prefix}...; webhook signing secret: {secret})", err=True)


# -- demo -------------------------------------------------------------------------------------
@app.command()
@user_errors
def demo(
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the demo keeps its database, blobs and model.")] = None,
    plugin: Annotated[Optional[str], typer.Option(help="Plugin (default: support_ticket if installed, else generic).")] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8000,
    samples: Annotated[int, typer.Option(help="Sample jobs to send.")] = 10,
    train_rows: Annotated[int, typer.Option(help="Rows of generated training data.")] = 400,
    epochs: Annotated[int, typer.Option(help="Most training epochs of the demo's network (the time limit decides).")] = 40,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds the demo may spend training its model (about).")] = 120.0,
    tiny: Annotated[bool, typer.Option("--tiny", help="Tiny random encoders (seconds to train; for tests).")] = False,
    keep_serving: Annotated[bool, typer.Option("--keep-serving/--exit-after-samples", "--no-keep-serving",
                                               help="Keep serving until Ctrl-C (default) or exit after the samples.")] = True,
) -> None:
    """Set up the embedded service, train a small model if none is registered, send sample
    jobs through the REST API, print their results, and keep serving."""
    from rich.console import Console

    console = Console()
    # The demo always runs its own worker, whatever TWINLENS_BROKER_URL says.
    settings = _settings(data_dir=data_dir).model_copy(update={"broker_url": None})
    database = _database(settings, migrate=True)
    chosen = _demo_plugin(plugin)
    model = _ensure_demo_model(console, database, settings, chosen, train_rows, epochs, tiny, time_limit)
    key = _demo_key(database)
    service = EmbeddedService(settings, port=port, database=database).build(migrate=False).start()
    try:
        console.print(f"[bold]TwinLens[/] serving on {service.url} (docs: {service.url}/docs), plugin [cyan]{chosen}[/], model {model}")
        console.print(f"API key (tenant {DEMO_TENANT}): [green]{key}[/]")
        console.print(f"Web console, logged in as tenant {DEMO_TENANT} (the link works once, within the hour): "
                      f"{_console_link(database, service.url, key)}", soft_wrap=True)
        _wait_ready(service.url)
        results = _send_samples(service.url, key, chosen, settings, samples)
        _print_results(console, results)
        if keep_serving:
            console.print("Serving until Ctrl-C. Try:\n"
                          f"  curl -H 'Authorization: Bearer {key}' {service.url}/v1/jobs")
            _wait_for_interrupt()
    finally:
        service.close()


def _demo_plugin(requested: str | None) -> str:
    from twinlens.contract.registry import default_registry

    names = default_registry().names()
    if requested:
        if requested not in names:
            fail(f"unknown plugin {requested!r}; installed: {', '.join(names)}")
        return requested
    return "support_ticket" if "support_ticket" in names else "generic"


def _ensure_demo_model(console, database, settings: Settings, plugin_name: str, rows: int, epochs: int, tiny: bool,
                       time_limit: float) -> str:
    from twinlens.db.repositories import ModelRepository
    from twinlens.services import models

    with database.session() as session:
        active = ModelRepository(session).active(plugin_name, None)
        if active is not None:
            return active.version
    bundle = settings.data_dir / "models" / f"{plugin_name}-demo-{int(time.time())}"
    console.print(f"No model for [cyan]{plugin_name}[/] yet: training one on {rows} generated rows (about {time_limit:.0f} s)...")
    _, metrics = train_sample_model_with_report(plugin_name, bundle, rows=rows, epochs=epochs, tiny=tiny, time_limit=time_limit)
    _print_training(console, metrics)
    with database.session() as session:
        return models.register_bundle(session, None, str(bundle), scope="global", activate=True).version


def train_sample_model(plugin_name: str, bundle_dir: Path, *, rows: int = 200, epochs: int = 3, tiny: bool = False, seed: int = 0,
                       preset: str = "auto", time_limit: float | None = None) -> Path:
    """Train a model on the plugin's generated sample data; return the bundle directory.

    The default preset is the automatic recipe (baselines, zero-shot, a network, the best or
    their ensemble ships) within `time_limit` seconds (30 with tiny encoders, else 150).
    """
    return train_sample_model_with_report(plugin_name, bundle_dir, rows=rows, epochs=epochs, tiny=tiny, seed=seed,
                                          preset=preset, time_limit=time_limit)[0]


def train_sample_model_with_report(plugin_name: str, bundle_dir: Path, *, rows: int = 200, epochs: int = 3, tiny: bool = False,
                                   seed: int = 0, preset: str = "auto", time_limit: float | None = None) -> tuple[Path, dict[str, Any]]:
    from twinlens.contract.registry import get_plugin

    plugin = get_plugin(plugin_name)
    manifest = plugin.make_sample_dataset(bundle_dir.parent / f"{bundle_dir.name}-data", n=rows, seed=seed)
    dataset = plugin.read_dataset(manifest)
    spec = plugin.default_model_spec()
    if tiny:
        spec = spec.model_copy(update=tiny_encoders())
    config = plugin.training_defaults().model_copy(update={"epochs": epochs, "seed": seed})
    if preset == "network":
        from twinlens.engine.training import train_model

        return bundle_dir, train_model(plugin, dataset, out_dir=bundle_dir, spec=spec, config=config).metrics
    from twinlens.engine.recipe import RecipeOptions, train_auto

    limit = time_limit or (30.0 if tiny else 150.0)
    options = RecipeOptions(time_limit=limit, seed=seed, progress=not tiny)
    return bundle_dir, train_auto(plugin, dataset, out_dir=bundle_dir, spec=spec, config=config, options=options).metrics


def tiny_encoders() -> dict[str, Any]:
    """Randomly initialised, very small encoders: trains in seconds on a CPU."""
    from twinlens.contract.spec import ImageEncoderSpec, TextEncoderSpec

    text = TextEncoderSpec(
        pretrained=False, max_length=32,
        config_overrides={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    )
    return {"image_encoder": ImageEncoderSpec(name="test_resnet", image_size=32), "text_encoder": text, "hidden_dim": 32}


def _print_training(console, metrics: dict[str, Any]) -> None:
    """What was trained and how it scored on the held-out validation rows."""
    console.print(f"Trained in {metrics.get('seconds', 0):.0f} s; ships: [cyan]{metrics.get('shipped')}[/] ({metrics.get('shipped_reason', '')})")
    for name, head in metrics.get("heads", {}).items():
        if head.get("accuracy") is not None:
            console.print(f"  held-out {name}: accuracy {head['accuracy']:.3f}, macro-F1 {head.get('macro_f1', 0):.3f} (n={head.get('n')})")


def _demo_key(database) -> str:
    from twinlens.services import keys

    with database.session() as session:
        _, plain = keys.create_key(session, DEMO_TENANT, admin=True, name="demo")
    return plain


def _console_link(database, url: str, key: str) -> str:
    from twinlens.services.console_sessions import create_login_link

    with database.session() as session:
        return f"{url}/console/login/{create_login_link(session, key)}"


def _wait_ready(url: str, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    fail("the service did not become ready in time", code=1)


def _send_samples(url: str, key: str, plugin_name: str, settings: Settings, count: int) -> list[dict[str, Any]]:
    import httpx

    from twinlens.contract.registry import get_plugin

    plugin = get_plugin(plugin_name)
    manifest = plugin.make_sample_dataset(settings.data_dir / "demo-samples" / plugin_name, n=max(count, 1), seed=12345)
    samples = plugin.read_dataset(manifest).samples[:count]
    results = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        for sample in samples:
            files = {"image": ("sample.png", _png(sample.image), "image/png")} if sample.image is not None else None
            texts = {name: value for name, value in sample.texts.items() if value}
            response = client.post(f"/v1/plugins/{plugin_name}/jobs", params={"wait": settings.max_wait_seconds},
                                   data=texts, files=files)
            results.append({"sample": sample, "status": response.status_code, "body": response.json()})
    return results


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _print_results(console, results: list[dict[str, Any]]) -> None:
    console.rule("Sample jobs sent through the REST API")
    for item in results:
        body, sample = item["body"], item["sample"]
        result = body.get("result") or {}
        decision = result.get("decision") or {}
        version = (result.get("model_version") or {}).get("version", "")
        console.print(f"[bold]job {str(body.get('id', ''))[:8]}[/] {body.get('status', item['status'])}  [dim]{version}[/]")
        console.print(f"  inputs:   {_describe_inputs(sample)}")
        console.print(f"  truth:    {', '.join(f'{k}={v}' for k, v in sample.labels.items())}")
        console.print(f"  decision: {_summarise_decision(decision) or body.get('error') or body.get('detail')}")
        if decision.get("needs_review"):
            console.print(f"  [yellow]needs review[/]: {decision.get('review_reason', '')}")
    right, total, confident_wrong = _score_samples(results)
    if total:
        console.print(f"[bold]{right} of {total}[/] sample jobs right on their first head"
                      f"{f'; {confident_wrong} wrong above 0.9 confidence' if confident_wrong else ''}")


def _score_samples(results: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(right, scored, wrong above 0.9 confidence) on each sample's first multiclass head."""
    right = total = confident_wrong = 0
    for item in results:
        heads = ((item["body"].get("result") or {}).get("heads")) or {}
        for name, truth in item["sample"].labels.items():
            head = heads.get(name)
            if isinstance(truth, str) and isinstance(head, dict) and head.get("label") is not None:
                total += 1
                if head["label"] == truth:
                    right += 1
                elif (head.get("confidence") or 0) > 0.9:
                    confident_wrong += 1
                break
    return right, total, confident_wrong


def _describe_inputs(sample) -> str:
    parts = ["image" if sample.image is not None else "no image"]
    parts += [f"{name}: {text[:60]!r}" for name, text in sample.texts.items() if text]
    return "; ".join(parts)


def _summarise_decision(decision: dict[str, Any]) -> str:
    """The decision's plain fields (labels, action, urgency...), not its nested detail."""
    shown = {k: v for k, v in decision.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    shown.pop("review_reason", None)
    heads = decision.get("heads")
    if isinstance(heads, dict):
        shown.update({name: h.get("label") or h.get("labels") or h.get("value") for name, h in heads.items() if isinstance(h, dict)})
    return ", ".join(f"{key}={str(value)[:80]}" for key, value in shown.items() if value not in (None, ""))


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
