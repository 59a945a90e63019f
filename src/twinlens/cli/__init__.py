"""The `twinlens` command line (typer).

Commands live in submodules that register themselves on `app` when imported below.
Nothing here imports torch: engine commands import it inside the command that runs.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="twinlens",
    help="TwinLens: a photo or scan plus its text -> a decision a person can act on.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# Engine commands: train, evaluate, predict; plugin commands: plugins, plugin new.
from twinlens.cli import engine, plugins  # noqa: E402,F401

# Service commands (serve, worker, db ...) register in twinlens/cli/service.py,
# imported here by one line: `from twinlens.cli import service`.
from twinlens.cli import service  # noqa: E402,F401
from twinlens.cli import workers  # noqa: E402,F401  (twinlens worker: the Celery fleet)
from twinlens.cli import tenants  # noqa: E402,F401  (twinlens tenants delete)
from twinlens.cli import export  # noqa: E402,F401  (twinlens export: ONNX graphs, docs/export.md)
from twinlens.cli import align  # noqa: E402,F401  (twinlens align: an image-text space, docs/search.md)
from twinlens.cli import connectors  # noqa: E402,F401  (twinlens connectors: helpdesks, docs/connectors/)
from twinlens.cli import models, training  # noqa: E402,F401  (twinlens models / training / data: the learning loop)
