"""`twinlens export`: a bundle's network as an ONNX graph (optionally int8), as a new bundle.

The engine (torch, onnx, onnxruntime) is imported inside the command. See docs/export.md.
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
def export(
    model: Annotated[Path, typer.Option("--model", help="Model bundle folder (a network or an ensemble bundle).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the exported bundle to (may be --model: replaced once complete).")],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="Also write an int8 graph (onnxruntime dynamic quantization); served by default.")] = None,
    exporter: Annotated[str, typer.Option("--exporter", help="auto (TorchScript, then dynamo), torchscript or dynamo.")] = "auto",
) -> None:
    """Export the network of a bundle to ONNX and write a bundle carrying the graph(s);
    run it with `--runtime onnx` (predict, evaluate) or TWINLENS_RUNTIME=onnx (workers)."""
    if fmt != "onnx":
        raise UsageProblem(f"--format {fmt}: only onnx is supported")
    if quantize not in (None, "int8"):
        raise UsageProblem(f"--quantize {quantize}: only int8 is supported")
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise UsageProblem(f"--exporter {exporter}: choose auto, torchscript or dynamo")
    if out.is_file():
        raise UsageProblem(f"--out {out}: is a file")

    from twinlens.engine.onnx_export import export_bundle

    with console.status("exporting the network to ONNX..."):
        result = export_bundle(model, out, quantize=quantize, exporter=exporter)
    section = result.onnx
    parity = section["parity"]
    graphs = ", ".join(f"{precision}: {name}" for precision, name in section["graphs"].items())
    console.print(f"exported with the {section['exporter']} exporter (opset {section['opset']}): {graphs}")
    console.print(f"fp32 graph vs torch, max |logit difference| on {section['parity_rows']} generated rows: "
                  f"{parity['fp32_max_abs_diff']:.2e}")
    if "int8_max_abs_diff" in parity:
        console.print(f"int8 graph vs torch, max |logit difference|: {parity['int8_max_abs_diff']:.2e} "
                      "(check the metric on your data: twinlens evaluate --runtime onnx)")
    console.print(f"model bundle: {result.bundle_dir} (version {result.version}, exported from {result.exported_from}); "
                  f"served graph: {section['default']}")
