"""Export a bundle's network to ONNX (fp32, optionally int8) and write it as a new bundle.

`export_bundle(src, out)` reads and verifies a network bundle or an ensemble bundle, exports
the network (for an ensemble: its network member in `network/`; linear members run in
numpy and need nothing), checks the graph against the torch model on generated inputs
(rows with and without each modality), and writes a copy of the bundle carrying the
graph(s) next to the safetensors weights, sealed again: every ONNX file is listed with its
digest and covered by the content hash, so the exported bundle is a new model version
(`onnx.exported_from` names the one it came from). Nothing in it is pickled: ONNX files
are protobuf, with every tensor inside the file (no external data).

The graph's inputs and outputs are described in onnx_graph.py.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twinlens.contract.bundle_files import CONFIG_NAME, read_bundle_config, seal_config, staged_bundle_folder
from twinlens.contract.errors import BundleError, TwinLensError
from twinlens.engine.data import Preprocessor, collate
from twinlens.engine.onnx_graph import (ExportableNetwork, batch_present, dynamic_axes, example_samples, feeds_from_batch,
                                        graph_modalities, input_names, output_names, torch_inputs)

log = logging.getLogger(__name__)

FP32_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
GRAPH_NAMES = {"fp32": FP32_NAME, "int8": INT8_NAME}
OPSET = 17
EXPORTERS = ("auto", "torchscript", "dynamo")
QUANTIZATIONS = ("int8",)
# Dynamic quantization: int8 weights, activations quantized per batch at run time, for the
# text side's MatMul/Gemm/Gather. Convolutions are quantized statically instead (QDQ, int8
# weights per output channel, activation ranges calibrated on generated example rows):
# onnxruntime's dynamic ConvInteger runs slower than its fp32 convolution, while its static
# QLinearConv uses the CPU's int8 dot products (VNNI).
INT8_OP_TYPES = ("MatMul", "Gemm", "Gather")
STATIC_OP_TYPES = ("Conv",)
CALIBRATION_ROWS = 32
# The fp32 graph must give the torch model's logits within this, or the export is refused.
FP32_TOLERANCE = 1e-3


class ExportError(TwinLensError):
    """The network could not be exported (an unsupported op) or the graph disagrees with torch."""


@dataclass
class ExportResult:
    bundle_dir: Path
    version: str
    exported_from: str
    network_dir: Path
    onnx: dict[str, Any]


def export_bundle(src: str | Path, out: str | Path, *, quantize: str | None = None, exporter: str = "auto",
                  check_rows: int = 8) -> ExportResult:
    """Write `out`: the bundle at `src` plus the ONNX graph(s) of its network, sealed anew.

    `out` may be `src` (the folder is replaced once the new bundle is complete)."""
    if quantize not in (None, *QUANTIZATIONS):
        raise ExportError(f"unknown quantization {quantize!r}; choose {', '.join(QUANTIZATIONS)}")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose {', '.join(EXPORTERS)}")
    src, out = Path(src), Path(out)
    config = read_bundle_config(src)
    network_rel = _network_folder(config)
    _refuse_multi_image(read_bundle_config(src / network_rel if network_rel else src))
    with staged_bundle_folder(out) as staging:
        shutil.copytree(src, staging, dirs_exist_ok=True)
        network_dir = staging / network_rel if network_rel else staging
        network_config = read_bundle_config(network_dir)
        for name in GRAPH_NAMES.values():  # an earlier export's graphs are replaced
            (network_dir / name).unlink(missing_ok=True)
        section = export_network_folder(network_dir, quantize=quantize, exporter=exporter, check_rows=check_rows)
        section["exported_from"] = network_config["version"]
        sealed = seal_config(network_dir, {**_unsealed(network_config), "onnx": section})
        if network_rel:
            root = {**_unsealed(config), "onnx": {"network": network_rel, "default": section["default"],
                                                  "exported_from": config["version"]}}
            sealed = seal_config(staging, root)
    final_network = out / network_rel if network_rel else out
    return ExportResult(out, sealed["version"], config["version"], final_network, section)


def _refuse_multi_image(network_config: dict[str, Any]) -> None:
    """The graph takes one image per row; a model of several image slots stays on torch
    (docs/multi-image.md) rather than being exported to a graph that reads one of them."""
    slots = (network_config.get("model_spec") or {}).get("max_images", 1)
    if slots > 1:
        raise ExportError(f"this model reads up to {slots} images per case; ONNX export supports single-image models "
                          "only, so it runs on the torch runtime")


def _network_folder(config: dict[str, Any]) -> str:
    """'' for a network bundle; the network member's folder for an ensemble."""
    if config.get("kind") != "ensemble":
        return ""
    members = [m for m in config.get("members", []) if m.get("kind") == "network"]
    if not members:
        raise ExportError("this ensemble has no network member: its linear members run in numpy and need no export")
    return members[0]["path"]


def _unsealed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("files", "content_hash", "version", "onnx")}


def export_network_folder(folder: Path, *, quantize: str | None, exporter: str, check_rows: int = 8) -> dict[str, Any]:
    """Export the network bundle in `folder` to ONNX files there; returns the config section."""
    from twinlens.engine.bundle import load_bundle

    model, tokenizer, _ = load_bundle(folder)
    pre = Preprocessor(model.spec, tokenizer)
    feeds, reference = parity_check_inputs(model, pre, check_rows)
    used, fp32_diff = export_model(model, pre, folder / FP32_NAME, exporter=exporter, check=(feeds, reference))
    graphs = {"fp32": FP32_NAME}
    parity = {"fp32_max_abs_diff": fp32_diff}
    quantization = None
    if quantize == "int8":
        calibration = [example_feeds(model, pre, 8, seed=10 + n) for n in range(CALIBRATION_ROWS // 8)]
        quantization = quantize_int8(folder / FP32_NAME, folder / INT8_NAME, calibration)
        graphs["int8"] = INT8_NAME
        parity["int8_max_abs_diff"] = max_abs_diff(reference, run_graph(folder / INT8_NAME, feeds))
    return {
        "graphs": graphs, "default": "int8" if quantize == "int8" else "fp32", "inputs": input_names(model.spec),
        "outputs": output_names(model), "modalities": graph_modalities(model.spec), "opset": OPSET, "exporter": used,
        "dynamic_axes": dynamic_axes(model.spec), "parity": {k: float(v) for k, v in parity.items()},
        "parity_rows": check_rows, "quantization": quantization, "versions": _versions(),
    }


# -- the graph ------------------------------------------------------------------------------


def parity_check_inputs(model: Any, pre: Preprocessor, rows: int = 8) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Generated feeds of other sizes than the export example, and the torch model's
    logits on them."""
    feeds = example_feeds(model, pre, rows, seed=1)
    return feeds, torch_logits(model, feeds)


def example_feeds(model: Any, pre: Preprocessor, rows: int, *, seed: int) -> dict[str, np.ndarray]:
    """Graph feeds of `rows` generated samples (batch, sequence lengths, n-gram widths,
    variants: each modality masked, then the rows again): parity checks and calibration."""
    batch = collate(pre.encode_many(example_samples(model.spec, rows, seed=seed)), pre)
    present = batch_present(model.spec, batch)
    return feeds_from_batch(model.spec, batch, np.concatenate([present_variants(present), present[None]]))


def export_model(model: Any, pre: Preprocessor, path: Path, *, exporter: str = "auto",
                 check: tuple[dict[str, np.ndarray], list[np.ndarray]] | None = None) -> tuple[str, float]:
    """Write the fp32 graph of `model` to `path`; returns the exporter that succeeded and
    the largest logit difference from torch on `check` (see `parity_check_inputs`).

    An exporter whose graph fails on inputs of other sizes than its example (a shape
    baked in as a constant) or disagrees with torch counts as failed; the next is tried."""
    model = model.cpu().eval()
    check = check or parity_check_inputs(model, pre)
    wrapper = ExportableNetwork(model).eval()
    batch = collate(pre.encode_many(example_samples(model.spec, 3, seed=0, long_text=True)), pre)
    feeds = feeds_from_batch(model.spec, batch, present_variants(batch_present(model.spec, batch))[:2])
    args = torch_inputs(feeds, model.spec)
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    # The fused attention kernels of nn.TransformerEncoderLayer / nn.MultiheadAttention in
    # eval mode ("fast path") have no ONNX form; the plain ops they replace do.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        for name in order:
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    (_export_torchscript if name == "torchscript" else _export_dynamo)(wrapper, args, model, path)
                _check_self_contained(path)
                difference = max_abs_diff(check[1], run_graph(path, check[0]))
                if difference > FP32_TOLERANCE:
                    raise ExportError(f"its graph's logits differ from torch by {difference:.2e} (more than {FP32_TOLERANCE:g}) "
                                      "on inputs of other sizes than the export example")
                return name, difference
            except Exception as exc:  # an unsupported op, or an exporter missing from this torch
                log.warning("ONNX export with the %s exporter failed: %s", name, _first_line(exc))
                errors.append(f"{name}: {_first_line(exc)}")
                path.unlink(missing_ok=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    raise ExportError("the network could not be exported to ONNX (" + "; ".join(errors) + ")")


def _export_torchscript(wrapper, args, model, path: Path) -> None:
    torch.onnx.export(wrapper, args, str(path), input_names=input_names(model.spec), output_names=output_names(model),
                      dynamic_axes=dynamic_axes(model.spec), opset_version=OPSET, dynamo=False, do_constant_folding=True)


def _export_dynamo(wrapper, args, model, path: Path) -> None:
    from torch.export import Dim

    dims: dict[str, Any] = {}
    shapes = tuple({axis: dims.setdefault(label, Dim(label)) for axis, label in axes.items()}
                   for axes in dynamic_axes(model.spec).values())
    program = torch.onnx.export(wrapper, args, None, input_names=input_names(model.spec), output_names=output_names(model),
                                dynamic_shapes=(shapes,), dynamo=True, external_data=False, optimize=True)
    program.save(str(path), external_data=False)


def _check_self_contained(path: Path) -> None:
    from twinlens.engine.onnx_runtime import check_graph

    check_graph(path.read_bytes(), str(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def quantize_int8(fp32: Path, int8: Path, calibration: list[dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """onnxruntime quantization: convolutions statically (QDQ, calibrated on `calibration`
    feeds) when the graph has any and feeds are given, then int8 weights for MatMul/Gemm/Gather."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    has_conv = any(node.op_type in STATIC_OP_TYPES for node in onnx.load(str(fp32), load_external_data=False).graph.node)
    static = bool(calibration) and has_conv
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = fp32
        if static:
            source = Path(scratch) / "conv.int8.onnx"
            _quantize_convolutions(fp32, source, calibration)
        staged = Path(scratch) / INT8_NAME
        quantize_dynamic(str(source), str(staged), weight_type=QuantType.QInt8, op_types_to_quantize=list(INT8_OP_TYPES),
                         extra_options={"MatMulConstBOnly": True})
        _check_self_contained(staged)
        shutil.move(str(staged), int8)
    method = {"method": "onnxruntime dynamic", "weight_type": "int8", "op_types": list(INT8_OP_TYPES)}
    if static:
        method["static"] = {"op_types": list(STATIC_OP_TYPES), "format": "QDQ", "per_channel": True,
                            "calibration": "minmax", "calibration_rows": sum(f["present"].shape[1] for f in calibration)}
    return method


def _quantize_convolutions(fp32: Path, out: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._left = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._left, None)

    # Optimised first (batch norms folded into their convolutions), so each QDQ pair wraps a
    # convolution onnxruntime can fuse into one int8 kernel.
    prepared = out.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    op_types_to_quantize=list(STATIC_OP_TYPES))


# -- example inputs and checks -----------------------------------------------------------------


def present_variants(present: np.ndarray) -> np.ndarray:
    """(1 + modalities, batch, modalities): the rows as they are, then each modality masked."""
    variants = [present]
    for column in range(present.shape[1]):
        masked = present.copy()
        masked[:, column] = False
        variants.append(masked)
    return np.stack(variants)


@torch.inference_mode()
def torch_logits(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The torch model's own forward (not the export wrapper) on the graph's feeds."""
    used = graph_modalities(model.spec)
    batch = _batch_from_feeds(model.spec, feeds)
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in model.heads}
    for variant in feeds["present"]:
        present = {m: torch.from_numpy(variant[:, used.index(m)]) if m in used else torch.zeros(variant.shape[0], dtype=torch.bool)
                   for m in model.spec.all_modalities()}
        for name, logits in model(batch, present).items():
            outputs[name].append(logits.float())
    return [torch.stack(parts).numpy() for parts in outputs.values()]


def _batch_from_feeds(spec: Any, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    inputs: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in feeds.items():
        if name == "present":
            continue
        if name == "pixels":
            inputs["image"] = {"pixels": torch.from_numpy(value)}
        else:
            modality, key = name.rsplit(".", 1)
            inputs.setdefault(modality, {})[key] = torch.from_numpy(value)
    size = feeds["present"].shape[1]
    if "image" not in inputs:
        side = spec.image_encoder.image_size
        inputs["image"] = {"pixels": torch.zeros(size, 3, side, side)}
    return {"inputs": inputs, "present": {}}


def run_graph(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from twinlens.engine.onnx_runtime import new_session

    return new_session(path.read_bytes(), threads=torch.get_num_threads(), quiet=True).run(None, feeds)


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)).max()) for x, y in zip(a, b))


def _versions() -> dict[str, str]:
    found = {}
    for name in ("onnx", "onnxruntime", "onnxscript", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


__all__ = ["ExportError", "ExportResult", "export_bundle", "export_model", "quantize_int8", "FP32_NAME", "INT8_NAME",
           "GRAPH_NAMES", "CONFIG_NAME", "BundleError"]
