"""Engine commands: train, evaluate, predict.

The engine (torch) is imported inside each command, so `twinlens --help` stays fast and
the CLI module stays importable where torch is not wanted.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from twinlens.cli import app
from twinlens.cli.common import UsageProblem, json_safe, parse_pairs, split_list, user_errors, write_json
from twinlens.cli.datasets import read_data, read_for_schema
from twinlens.cli.options import dataset_options, load_spec_file, model_spec, train_config
from twinlens.cli.render import console, print_candidates, print_members, print_prediction, print_report
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Plugin, RawImage, RawInput
from twinlens.contract.registry import get_plugin
from twinlens.contract.schema import LabelSchema
from twinlens.contract.spec import ModelSpec

# Column options shared by every command that reads a data set.
ImageCol = Annotated[Optional[str], typer.Option("--image-col", help="Column holding the image path (relative to the manifest).")]
TextCol = Annotated[Optional[str], typer.Option("--text-col", help="Column holding the text.")]
LabelCols = Annotated[Optional[list[str]], typer.Option("--label-col", help="Label column(s); repeat or give a comma list.")]
TaskKinds = Annotated[Optional[list[str]], typer.Option("--task-kind", help="Force a column's task kind: COLUMN=multiclass|multilabel|regression.")]
TextRequired = Annotated[bool, typer.Option("--text-required", help="Rows with empty text are bad rows.")]
SkipBadRows = Annotated[bool, typer.Option("--skip-bad-rows", help="Leave bad rows out (and list them) instead of stopping.")]
Device = Annotated[Optional[str], typer.Option("--device", help="torch device, e.g. cpu or cuda (default: cuda when available).")]
Modalities = Annotated[Optional[str], typer.Option("--modalities", help="Comma list of modalities to use, e.g. image,text.")]
Runtime = Annotated[str, typer.Option("--runtime", help="torch, or onnx: the bundle's ONNX graph on onnxruntime (twinlens export; falls back to torch when it has none).")]
GroupCol = Annotated[Optional[str], typer.Option("--group-col", help="Column grouping rows (patient, event...) that must stay on one side of the validation split.")]


@app.command()
@user_errors
def train(
    plugin: Annotated[str, typer.Option("--plugin", help="Registered plugin name (see `twinlens plugins`).")],
    data: Annotated[Path, typer.Option("--data", help="Training data in a format the plugin reads.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the model bundle to.")],
    val: Annotated[Optional[Path], typer.Option("--val", help="Validation data; without it a fraction of --data is held out.")] = None,
    fusion: Annotated[Optional[str], typer.Option("--fusion", help="Fusion strategy, e.g. concat, weighted, gated, cross_attention, early.")] = None,
    image_encoder: Annotated[Optional[str], typer.Option("--image-encoder", help="timm model name.")] = None,
    text_encoder: Annotated[Optional[str], typer.Option("--text-encoder", help="Hugging Face model name or local folder.")] = None,
    modalities: Modalities = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    spec: Annotated[Optional[Path], typer.Option("--spec", help='JSON file: {"model": {ModelSpec fields}, "train": {TrainConfig fields}}; flags win.')] = None,
    image_col: ImageCol = None,
    text_col: TextCol = None,
    label_col: LabelCols = None,
    task_kind: TaskKinds = None,
    text_required: TextRequired = False,
    skip_bad_rows: SkipBadRows = False,
    device: Device = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    preset: Annotated[str, typer.Option("--preset", help="auto: baselines, zero-shot and a network within --time-limit, the best or their ensemble ships; network: one network as configured.")] = "auto",
    time_limit: Annotated[float, typer.Option("--time-limit", min=10, help="Seconds the auto preset may spend training (about).")] = 300.0,
    group_col: GroupCol = None,
) -> None:
    """Train a model for a plugin and write a bundle; prints the validation report."""
    if preset not in ("auto", "network"):
        raise UsageProblem(f"--preset {preset}: choose auto or network")
    chosen = get_plugin(plugin)
    overrides = load_spec_file(spec)
    model = model_spec(chosen.default_model_spec(), overrides["model"], fusion=fusion, image_encoder=image_encoder,
                       text_encoder=text_encoder, modalities=[modalities] if modalities else None)
    config = train_config(chosen.training_defaults(), overrides["train"], epochs=epochs, batch_size=batch_size,
                          seed=seed, progress=progress)
    _check_out_dir(out)
    _check_engine_names(model)
    options = dataset_options(image_col=image_col, text_col=text_col, label_cols=label_col, task_kinds=task_kind,
                              text_required=text_required, skip_bad_rows=skip_bad_rows, group_col=group_col)
    train_set = read_data(chosen, data, options)
    val_set = read_for_schema(chosen, val, options, train_set.label_schema) if val else None
    _check_schema(chosen, train_set.label_schema)

    if preset == "network":
        from twinlens.engine.training import train_model

        result = train_model(chosen, train_set, out_dir=out, val=val_set, spec=model, config=config, device=device)
        print_report(result.metrics, "validation report")
    else:
        from twinlens.engine.recipe import RecipeOptions, train_auto

        recipe = RecipeOptions(time_limit=time_limit, seed=config.seed, progress=progress, device=device)
        result = train_auto(chosen, train_set, out_dir=out, val=val_set, spec=model, config=config, options=recipe)
        print_report(result.metrics, f"validation report of what ships ({result.metrics['shipped']})")
        print_candidates(result.metrics, "candidates on the same validation split")
    console.print(f"model bundle: {result.bundle_dir}")


def _check_out_dir(out: Path) -> None:
    """The engine replaces --out wholesale: only ever an empty folder or an old bundle."""
    if out.is_file():
        raise UsageProblem(f"--out {out}: is a file")
    if not out.is_dir() or not any(out.iterdir()):
        return
    from twinlens.contract.bundle_files import CONFIG_NAME, FORMAT

    try:
        marker = json.loads((out / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = None
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise UsageProblem(f"--out {out}: folder is not empty and holds no model bundle; refusing to replace it")


def _check_engine_names(spec: ModelSpec) -> None:
    """The engine's check, reworded as the flag the user typed."""
    from twinlens.engine.names import check_engine_names

    try:
        check_engine_names(spec)
    except InputError as error:
        raise UsageProblem(f"--{error.field.replace('_', '-')} {error.reason}") from None


def _check_schema(plugin: Plugin, schema: LabelSchema) -> None:
    from twinlens.contract.registry import check_schema_matches

    check_schema_matches(plugin, schema)


@app.command()
@user_errors
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Model bundle folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data in a format the model's plugin reads.")],
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON to this file.")] = None,
    modalities: Modalities = None,
    image_col: ImageCol = None,
    text_col: TextCol = None,
    label_col: LabelCols = None,
    text_required: TextRequired = False,
    skip_bad_rows: SkipBadRows = False,
    device: Device = None,
    group_col: GroupCol = None,
    runtime: Runtime = "torch",
) -> None:
    """Evaluate a model bundle on a labelled data set; prints a table per head (and, for an
    automatic run's bundle, every baseline it kept next to what ships)."""
    from twinlens.contract.bundle_files import read_bundle_config

    config = read_bundle_config(model)
    chosen = get_plugin(config["plugin"])
    schema = LabelSchema.model_validate(config["label_schema"])
    options = dataset_options(image_col=image_col, text_col=text_col, label_cols=label_col,
                              text_required=text_required, skip_bad_rows=skip_bad_rows, group_col=group_col)
    dataset = read_for_schema(chosen, data, options, schema)
    used = split_list([modalities]) if modalities else None
    known = config["modalities"] if config.get("kind") == "ensemble" else ModelSpec.model_validate(config["model_spec"]).all_modalities()
    _check_modalities(used, known)

    from twinlens.engine.evaluation import evaluate_bundle

    report = evaluate_bundle(model, dataset, modalities=used, device=device, runtime=_runtime(runtime))
    print_report(report, f"evaluation of {config.get('version', model)} on {data}")
    print_members(report, "every model kept in the bundle, on the same data")
    if json_file is not None:
        write_json(json_file, report)
        console.print(f"report written to {json_file}")


def _runtime(value: str) -> str:
    if value not in ("torch", "onnx"):
        raise UsageProblem(f"--runtime {value}: choose torch or onnx")
    return value


def _check_modalities(used: list[str] | None, known: list[str]) -> None:
    if used is None:
        return
    unknown = [name for name in used if name not in known]
    if unknown or not used:
        raise UsageProblem(f"--modalities {','.join(used)}: this model has {', '.join(known)}")


@app.command()
@user_errors
def predict(
    model: Annotated[Path, typer.Option("--model", help="Model bundle folder.")],
    image: Annotated[Optional[list[str]], typer.Option(
        "--image", help="Image file; repeat it for a case of several images (up to the plugin's max_images), "
                        "VIEW=FILE names the image's view (e.g. lateral=side.dcm).")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="Text; goes to the plugin's first text input.")] = None,
    field: Annotated[Optional[list[str]], typer.Option("--field", help="NAME=VALUE for a named text input or metadata field; repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object {prediction, decision, model}.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Score every row of a JSONL/CSV file instead of one input (needs --out).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="With --data: JSONL file of one scored row per input row.")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="With --data: skip rows already in --out (default) or overwrite it.")] = True,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1024, help="With --data: rows per model batch.")] = 32,
    contributions: Annotated[bool, typer.Option("--contributions/--no-contributions", help="Compute each modality's share of the decision.")] = True,
    device: Device = None,
    runtime: Runtime = "torch",
) -> None:
    """Predict one input (or, with --data, every row of a file) with a model bundle and show the plugin's decision."""
    from twinlens.contract.bundle_files import read_bundle_config

    config = read_bundle_config(model)
    chosen = get_plugin(config["plugin"])
    if data is not None:
        _predict_file(model, chosen, data, out, BulkChoice(resume, batch_size, contributions), device, _runtime(runtime))
        return
    if out is not None:
        raise UsageProblem("--out goes with --data (one input prints its answer)")
    sample = chosen.prepare(_raw_input(chosen, image, text, parse_pairs(field, "--field")))

    from twinlens.engine.predictor import Predictor

    predictor = Predictor.from_bundle(model, device=device, runtime=_runtime(runtime))
    _check_schema(chosen, predictor.label_schema)
    prediction = predictor.predict([sample], contributions=contributions)[0]
    decision = chosen.decide(prediction)
    about = {"path": str(model), "plugin": config["plugin"], "version": config.get("version"), "created_at": config.get("created_at")}
    result = json_safe({"prediction": prediction.to_dict(), "decision": decision, "model": about})
    if as_json:
        typer.echo(json.dumps(result, allow_nan=False))
    else:
        print_prediction(result["prediction"], result["decision"], about)


@dataclass
class BulkChoice:
    resume: bool
    batch_size: int
    contributions: bool


def _predict_file(model: Path, plugin: Plugin, data: Path, out: Path | None, choice: BulkChoice, device: str | None,
                  runtime: str = "torch") -> None:
    from tqdm.auto import tqdm

    from twinlens.contract.table import read_table
    from twinlens.engine.bulk import BulkOptions, score_file
    from twinlens.engine.predictor import Predictor

    if out is None:
        raise UsageProblem("--data needs --out FILE (the scored rows are written there, one JSON line each)")
    predictor = Predictor.from_bundle(model, device=device, runtime=runtime)
    _check_schema(plugin, predictor.label_schema)
    total = len(read_table(data).rows)
    options = BulkOptions(batch_size=choice.batch_size, contributions=choice.contributions, resume=choice.resume)
    with tqdm(total=total, desc="scoring", unit="row", disable=not console.is_terminal) as bar:
        summary = score_file(plugin, predictor, data, out, options, progress=bar.update)
    console.print(f"{summary.scored} rows scored, {summary.already_done} already in {out}, {len(summary.bad)} could not be scored",
                  soft_wrap=True)
    for error in summary.bad[:20]:
        console.print(f"  {error}", soft_wrap=True, markup=False)
    if len(summary.bad) > 20:
        console.print(f"  ... and {len(summary.bad) - 20} more (each is a line in {out} with an \"error\")", soft_wrap=True)


def _raw_input(plugin: Plugin, image: Path | list[str] | None, text: str | None, fields: dict[str, str]) -> RawInput:
    inputs = plugin.input_schema()
    texts: dict[str, str | None] = {}
    metadata: dict[str, Any] = {}
    if text is not None:
        if not inputs.texts:
            raise UsageProblem(f"--text: plugin {plugin.name!r} takes no text")
        texts[inputs.text_names[0]] = text
    metadata_names = [item.name for item in inputs.metadata]
    for name, value in fields.items():
        if name in inputs.text_names:
            texts[name] = value
        elif name in metadata_names:
            metadata[name] = value
        else:
            raise UsageProblem(f"--field {name}: plugin {plugin.name!r} has text inputs {inputs.text_names} and metadata {metadata_names}")
    images = _images(plugin, [image] if isinstance(image, Path) else list(image or []))
    if not images and not any(value and value.strip() for value in texts.values()):
        raise UsageProblem("give --image and/or --text (or --field NAME=VALUE)")
    return RawInput.of_images(images, texts=texts, metadata=metadata)


def _images(plugin: Plugin, given: list[Path | str]) -> list[RawImage]:
    """Each --image as a RawImage: FILE, or VIEW=FILE for one of the plugin's views."""
    schema = plugin.input_schema().image
    most = schema.max_images if schema is not None else 0
    if len(given) > most:
        raise UsageProblem(f"--image given {len(given)} times; plugin {plugin.name!r} takes at most {most} "
                           f"image{'s' if most != 1 else ''} per case (max_images={most})")
    images = []
    for item in given:
        view, _, rest = str(item).partition("=")
        if not rest or schema is None or view not in schema.views:
            view, path = None, Path(item)
        else:
            path = Path(rest)
        images.append(RawImage(_read_image(path), mimetypes.guess_type(str(path))[0], view))
    return images


def _read_image(path: Path) -> bytes:
    if not path.is_file():
        raise UsageProblem(f"--image {path}: no such file")
    return path.read_bytes()
