"""`twinlens worker`: a Celery worker of the production fleet (needs TWINLENS_BROKER_URL)."""

from __future__ import annotations

import os
import socket
from typing import Annotated, Optional

import typer

from twinlens.cli import app
from twinlens.cli.common import user_errors


def default_queues() -> list[str]:
    """Predictions and webhooks. Training is left out on purpose: a run can take hours,
    and a worker busy training would hold up every prediction queued behind it, so
    training gets a worker of its own (`--queues training`)."""
    from twinlens.contract.registry import default_registry
    from twinlens.queue import WEBHOOK_QUEUE, predict_queue

    return [predict_queue(name) for name in default_registry().names()] + [WEBHOOK_QUEUE]


@app.command()
@user_errors
def worker(
    queues: Annotated[Optional[str], typer.Option(help="Comma-separated queues (default: every plugin's predict.<plugin> and webhooks; "
                                                           "training runs only on workers started with --queues training).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Processes (prefork) or threads; 1 = solo pool, the choice for one GPU.")] = 1,
    pool: Annotated[Optional[str], typer.Option(help="solo, prefork or threads (default: solo for 1, else prefork).")] = None,
    torch_threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads per process (default: TWINLENS_WORKER_TORCH_THREADS or torch's).")] = None,
    hostname: Annotated[Optional[str], typer.Option(help="Worker name (default: twinlens-<pid>@<host>).")] = None,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run a worker that takes jobs from Redis. Start as many as you like, on any machine
    that reaches the same database, broker and model bundle paths."""
    from twinlens.settings import get_settings

    settings = get_settings()
    if not settings.broker_url:
        raise typer.BadParameter("set TWINLENS_BROKER_URL (redis://...); without a broker `twinlens serve` runs jobs itself")
    threads = torch_threads or settings.worker_torch_threads
    if threads:  # before torch is imported anywhere in this process or its children
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    from twinlens.queue import configure
    from twinlens.worker.celery_app import make_celery

    configure(settings.broker_url)  # the sweeper re-publishes through the same queue module
    from twinlens.logging_setup import configure_logging

    configure_logging(settings.env)  # JSON lines in production; Celery keeps a root handler it finds
    chosen_pool = pool or ("solo" if concurrency == 1 else "prefork")
    argv = ["worker", f"--loglevel={loglevel}", f"--pool={chosen_pool}", f"--concurrency={concurrency}",
            f"--queues={queues or ','.join(default_queues())}",
            f"--hostname={hostname or f'twinlens-{os.getpid()}@{socket.gethostname()}'}", "--without-gossip", "--without-mingle"]
    make_celery(settings).worker_main(argv)
