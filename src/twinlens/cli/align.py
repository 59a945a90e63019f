"""`twinlens align`: a shared image-text space (CLIP-style) trained on your own (photo,
text) pairs, for a model bundle's vectors or a local CLIP folder's. See docs/search.md.

The engine (torch) is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from twinlens.cli import app
from twinlens.cli.common import UsageProblem, user_errors
from twinlens.cli.render import console


@app.command()
@user_errors
def align(
    plugin: Annotated[str, typer.Option("--plugin", help="Plugin whose data set format --data is in, e.g. support_ticket.")],
    data: Annotated[Path, typer.Option("--data", help="Data set of (photo, text) pairs the plugin reads (labels are not needed).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the space to (alignment.json, alignment.safetensors).")],
    model: Annotated[Optional[Path], typer.Option("--model", help="Model bundle whose image and text vectors are aligned.")] = None,
    clip: Annotated[Optional[Path], typer.Option("--clip", help="A local CLIP folder (Hugging Face layout) to start from instead "
                                                               "of --model; default the TWINLENS_CLIP_PATH setting. Never downloaded.")] = None,
    text_field: Annotated[Optional[str], typer.Option("--text-field", help="The text input to align; default the model's first.")] = None,
    dim: Annotated[int, typer.Option("--dim", min=2, max=1024, help="Dimensions of the shared space.")] = 64,
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=10_000)] = 200,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
) -> None:
    """Train an aligned image-text space with a symmetric InfoNCE (CLIP) loss; prints the
    held-out text-to-image retrieval against chance. Register it with the service by a
    training run of kind align (POST /v1/plugins/{name}/alignments)."""
    from twinlens.contract.registry import get_plugin
    from twinlens.settings import get_settings

    clip = clip or (get_settings().clip_path if model is None else None)
    if (model is None) == (clip is None):
        raise UsageProblem("give --model BUNDLE or --clip FOLDER (or set TWINLENS_CLIP_PATH), not both")
    if not data.is_file():
        raise UsageProblem(f"--data {data}: no such file")
    if out.is_file():
        raise UsageProblem(f"--out {out}: is a file")
    dataset = get_plugin(plugin).read_dataset(data)

    from twinlens.engine.align import AlignOptions, align_clip, align_model

    options = AlignOptions(dim=dim, epochs=epochs, seed=seed, text_field=text_field)
    with console.status(f"aligning images and texts of {len(dataset.samples)} rows..."):
        if model is not None:
            result = align_model(model, dataset.samples, out, options)
        else:
            field = text_field or next((f.name for f in get_plugin(plugin).input_schema().texts), None)
            if field is None:
                raise UsageProblem(f"plugin {plugin} has no text input to align")
            result = align_clip(clip, dataset.samples, field, out, options)
    metrics = result.metrics
    console.print(f"aligned {metrics['pairs']} (photo, {result.text_kind}) pairs into {result.config['dim']} dimensions "
                  f"(temperature {metrics['temperature']:.3f})")
    held = metrics.get("heldout")
    if held:
        for k in (1, 5, 10):
            if f"recall@{k}" in held:
                console.print(f"  held-out text -> its photo, recall@{k}: {held[f'recall@{k}']:.3f} (chance {held[f'random_recall@{k}']:.3f})")
    console.print(f"space: {result.out_dir}")
