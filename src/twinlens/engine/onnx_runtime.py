"""Run a bundle's ONNX graph with onnxruntime behind the Predictor interface.

`OnnxPredictor` answers what `twinlens.engine.predictor.Predictor` answers (`preprocess`,
`predict`, `predict_encoded`, `outputs`, `version`, `plugin_name`, `label_schema`,
`spec`, `config`) with the same preprocessing (the bundle's tokenizer and image size),
calibration and contributions. `Predictor.from_bundle(path, runtime="onnx")` returns one
(or, for an ensemble bundle, an EnsemblePredictor whose network member is one), and
falls back to torch with one warning when the bundle carries no graph or onnxruntime
cannot run it.

Before a graph is handed to onnxruntime the whole bundle is verified (every file's digest
and the content hash), the exact bytes loaded are hashed again against config.json, and
the graph is refused if it refers to external data files or to an operator domain that
neither ONNX, onnxruntime nor the graph itself defines.

Contributions (`outputs_masked`) cost one graph run per batch: the graph takes several
presence masks at once (the rows as they are, then each modality masked), runs the
encoders once and only the fusion and heads per mask, as the torch predictor does.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twinlens.contract.bundle_files import read_bundle_config
from twinlens.contract.errors import BundleError, TwinLensError
from twinlens.contract.schema import LabelSchema
from twinlens.contract.spec import ModelSpec
from twinlens.engine.data import EncodedSample, Preprocessor, batches, collate
from twinlens.engine.embeddings import EmbeddingCollector
from twinlens.engine.onnx_graph import EMBEDDING_PREFIX, batch_present, example_samples, feeds_from_batch, graph_modalities, input_names
from twinlens.engine.predictor import EncodedPredicting
from twinlens.engine.reporting import calibrated_outputs

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx")
PRECISIONS = ("fp32", "int8")
_STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}


class OnnxUnavailable(TwinLensError):
    """The bundle carries no usable ONNX graph, or onnxruntime cannot run it here."""


# -- graphs ---------------------------------------------------------------------------------


def check_graph(data: bytes, where: str) -> None:
    """Refuse a graph that reads external data files or uses an unknown operator domain."""
    import onnx

    try:
        graph = onnx.load_model_from_string(data)
    except Exception as exc:  # not a protobuf ModelProto
        raise BundleError(f"{where}: not an ONNX model: {exc}") from exc
    tensors = list(graph.graph.initializer)
    for node in _all_nodes(graph):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                tensors.append(attribute.t)
            tensors.extend(attribute.tensors)
    if any(t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) for t in tensors):
        raise BundleError(f"{where}: the ONNX graph refers to external data files; only self-contained graphs are loaded")
    known = _STANDARD_DOMAINS | {function.domain for function in graph.functions}
    unknown = sorted({node.domain for node in _all_nodes(graph)} - known)
    if unknown:
        raise BundleError(f"{where}: the ONNX graph uses operator domains {unknown} (custom ops are never loaded)")


def _all_nodes(model: Any):
    def walk(graph):
        for node in graph.node:
            yield node
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    yield from walk(attribute.g)
                for sub in attribute.graphs:
                    yield from walk(sub)

    yield from walk(model.graph)
    for function in model.functions:
        yield from function.node


def new_session(data: bytes, *, threads: int | None = None, device: str | None = None, quiet: bool = False):
    """An onnxruntime session on the graph bytes given (CPU; CUDA when asked and available);
    `quiet`: onnxruntime logs nothing itself (the caller reports what failed)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if quiet:
        options.log_severity_level = 4
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device and device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning("onnxruntime has no CUDA provider here; the ONNX graph runs on the CPU")
    return ort.InferenceSession(data, options, providers=providers)


def read_graph(root: Path, config: dict[str, Any], precision: str | None = None) -> tuple[str, bytes]:
    """(precision, verified graph bytes) of a network bundle whose config was just verified."""
    section = config.get("onnx")
    if not isinstance(section, dict) or not section.get("graphs"):
        raise OnnxUnavailable(f"{root}: the bundle carries no ONNX graph (export it: twinlens export --format onnx)")
    chosen = precision or section.get("default", "fp32")
    name = section["graphs"].get(chosen)
    if name is None:
        raise OnnxUnavailable(f"{root}: the bundle has no {chosen} ONNX graph (it has {', '.join(section['graphs'])})")
    data = (root / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != config["files"].get(name):
        raise BundleError(f"{root}: {name} fails its hash: the bundle was modified after it was saved")
    check_graph(data, f"{root / name}")
    return chosen, data


# -- the predictor ---------------------------------------------------------------------------


class OnnxPredictor(EncodedPredicting):
    """Same interface as twinlens.engine.predictor.Predictor, on onnxruntime."""

    runtime = "onnx"

    def __init__(self, session: Any, tokenizer: Any, config: dict[str, Any], *, precision: str = "fp32"):
        self.session = session
        self.config = config
        self.precision = precision
        self.spec = ModelSpec.model_validate(config["model_spec"])
        self.label_schema = LabelSchema.model_validate(config["label_schema"])
        self.pre = Preprocessor(self.spec, tokenizer)
        self.temperatures = config.get("temperatures", {})
        self.stats = {k: tuple(v) for k, v in config.get("regression_stats", {}).items()}
        self.device = torch.device("cpu")
        self.graph_modalities = graph_modalities(self.spec)
        self.head_names = [task.name for task in self.label_schema.tasks]
        self._output_names = [output.name for output in session.get_outputs()]
        heads = [name for name in self._output_names if not name.startswith(EMBEDDING_PREFIX)]
        if sorted(heads) != sorted(self.head_names):
            raise OnnxUnavailable(f"the ONNX graph's outputs {self._output_names} are not the heads {self.head_names}")
        # Graphs exported before the embedding outputs existed give no case embeddings.
        self.embedding_names = [name for name in self._output_names if name.startswith(EMBEDDING_PREFIX)]

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | None = None, *, precision: str | None = None,
                    threads: int | None = None) -> "OnnxPredictor":
        """Verify the bundle, then load its graph; raises OnnxUnavailable when there is none
        or onnxruntime cannot run it (BundleError when the bundle fails its checks)."""
        from twinlens.engine.encoders import load_tokenizer
        from twinlens.engine.bundle import TOKENIZER_DIR

        root = Path(path)
        config = read_bundle_config(root)
        if config.get("kind") == "ensemble":
            raise OnnxUnavailable(f"{root}: an ensemble bundle; load it with EnsemblePredictor.from_bundle(runtime='onnx')")
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
        chosen, data = read_graph(root, config, precision)
        try:
            session = new_session(data, threads=threads, device=device)
            predictor = cls(session, load_tokenizer(root / TOKENIZER_DIR), config, precision=chosen)
            predictor._smoke_test()
        except OnnxUnavailable:
            raise
        except Exception as exc:  # onnxruntime: an operator it does not implement, a bad graph
            raise OnnxUnavailable(f"{root}: onnxruntime cannot run the {chosen} graph: {_first_line(exc)}") from exc
        return predictor

    @property
    def plugin_name(self) -> str:
        return self.config["plugin"]

    @property
    def version(self) -> str:
        return self.config["version"]

    def outputs(self, encoded: list[EncodedSample], modalities: list[str] | None = None, batch_size: int = 32,
                embeddings: EmbeddingCollector | None = None) -> dict[str, torch.Tensor]:
        """Calibrated outputs per head (probabilities; regression values), rows in order;
        `modalities` keeps only those inputs; `embeddings` collects the case embeddings."""
        return self._variant_outputs(encoded, [modalities], batch_size, embeddings)[0]

    def outputs_masked(self, encoded: list[EncodedSample], masked: list[str], batch_size: int = 32,
                       embeddings: EmbeddingCollector | None = None
                       ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
        """Calibrated outputs with every input and with each of `masked` removed in turn,
        from one graph run per batch (the encoders run once; see onnx_graph.py)."""
        keeps = [None, *([o for o in self.spec.modalities if o != m] for m in masked)]
        variants = self._variant_outputs(encoded, keeps, batch_size, embeddings)
        return variants[0], dict(zip(masked, variants[1:]))

    def logits(self, encoded: list[EncodedSample], modalities: list[str] | None = None, batch_size: int = 32) -> dict[str, torch.Tensor]:
        """Raw logits per head (what the torch model's forward returns), rows in order."""
        return self._variant_logits(encoded, [modalities], batch_size)[0]

    # -- internals ----------------------------------------------------------------------

    def _variant_outputs(self, encoded, keeps, batch_size, embeddings=None) -> list[dict[str, torch.Tensor]]:
        return [calibrated_outputs(self.label_schema, logits, self.temperatures, self.stats)
                for logits in self._variant_logits(encoded, keeps, batch_size, embeddings)]

    def _variant_logits(self, encoded: list[EncodedSample], keeps: list[list[str] | None], batch_size: int,
                        embeddings: EmbeddingCollector | None = None) -> list[dict[str, torch.Tensor]]:
        """Logits per head for each `keeps` entry (None: every modality the row has)."""
        masks = np.array([[keep is None or m in keep for m in self.graph_modalities] for keep in keeps], dtype=np.bool_)
        parts: list[dict[str, list[np.ndarray]]] = [{name: [] for name in self.head_names} for _ in keeps]
        for rows in batches(len(encoded), batch_size):
            batch = collate([encoded[i] for i in rows], self.pre)
            present = batch_present(self.spec, batch)[None, :, :] & masks[:, None, :]
            results = dict(zip(self._output_names, self.session.run(self._output_names, feeds_from_batch(self.spec, batch, present))))
            for name in self.head_names:
                for variant, collected in enumerate(parts):
                    collected[name].append(results[name][variant])
            if embeddings is not None and self.embedding_names:
                self._collect_embeddings(embeddings, results, present[0])
        return [{name: torch.from_numpy(np.concatenate(chunks).astype(np.float32)) if chunks else torch.empty(0)
                 for name, chunks in collected.items()} for collected in parts]

    def _collect_embeddings(self, embeddings: EmbeddingCollector, results: dict[str, np.ndarray], present: np.ndarray) -> None:
        pooled = {m: results[f"{EMBEDDING_PREFIX}{m}"] for m in self.graph_modalities}
        shown = {m: present[:, column] for column, m in enumerate(self.graph_modalities)}
        embeddings.add_arrays(results[f"{EMBEDDING_PREFIX}fused"], pooled, shown)

    def _smoke_test(self) -> None:
        """One generated row through the graph, so an operator onnxruntime lacks shows now."""
        self.logits(self.pre.encode_many(example_samples(self.spec, 2, seed=0)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def load_onnx_or_none(path: str | Path, device: str | None = None) -> OnnxPredictor | None:
    """The OnnxPredictor of a network bundle, or None (after one warning) when the bundle
    has no graph or onnxruntime cannot run it; a bundle failing its checks still raises."""
    try:
        return OnnxPredictor.from_bundle(path, device=device)
    except OnnxUnavailable as reason:
        log.warning("runtime onnx: %s; falling back to torch", reason)
        return None
    except ImportError as missing:
        log.warning("runtime onnx: %s is not installed; falling back to torch", missing.name or missing)
        return None


__all__ = ["OnnxPredictor", "OnnxUnavailable", "RUNTIMES", "PRECISIONS", "check_graph", "new_session", "load_onnx_or_none",
           "read_graph", "input_names"]
