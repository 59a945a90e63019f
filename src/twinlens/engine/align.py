"""A shared image-text space, CLIP-style, trained on a tenant's own (photo, text) pairs.

No pretrained CLIP weights are assumed offline, so the space is built on what the tenant
already has: a trained model version's image and text vectors (engine/embeddings.py: each
modality's projected tokens, mean-pooled, exactly what the worker stores with every job).
Two linear maps take them into one space of `dim` dimensions; they are trained with the
symmetric InfoNCE loss of CLIP (each photo's own text against the batch's other texts and
the other way round, a learned temperature), so a text query can be compared with photos.
Because the maps work on the stored vectors, every past case is in the space as soon as
the maps exist: nothing is re-encoded.

When the user has a local CLIP folder (open_clip or Hugging Face layout; the `clip_path`
setting or `--clip`), its image and text towers give the vectors instead of the model's
(the maps start from CLIP's own joint space). Such a space is the CLI's: its vectors are
not the ones the service stores per job, so the service registers only model-based spaces.

Output folder: `alignment.json` (format, base model version, text input, dims, metrics,
the weights file's SHA-256) and `alignment.safetensors` (image.weight, image.bias,
text.weight, text.bias, logit_scale). No pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from twinlens.contract.errors import BundleError, TwinLensError
from twinlens.contract.sample import Sample

log = logging.getLogger(__name__)

FORMAT = "twinlens-alignment/1"
CONFIG_NAME = "alignment.json"
WEIGHTS_NAME = "alignment.safetensors"
WEIGHT_ORDER = ("image.weight", "image.bias", "text.weight", "text.bias")


class AlignmentError(TwinLensError):
    """The pairs cannot train a space (too few, no text or image), or a folder is not one."""


@dataclass
class AlignOptions:
    dim: int = 64
    epochs: int = 300
    lr: float = 5e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    holdout: float = 0.2
    seed: int = 0
    text_field: str | None = None  # None: the model's first text input
    min_pairs: int = 8


@dataclass
class AlignResult:
    out_dir: Path
    arrays: dict[str, np.ndarray]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def text_kind(self) -> str:
        return self.config["text_kind"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.config["metrics"]


class _Maps(nn.Module):
    def __init__(self, image_dim: int, text_dim: int, dim: int):
        super().__init__()
        self.image = nn.Linear(image_dim, dim)
        self.text = nn.Linear(text_dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        a = nn.functional.normalize(self.image(images), dim=-1)
        b = nn.functional.normalize(self.text(texts), dim=-1)
        return self.logit_scale.clamp(max=math.log(100.0)).exp() * a @ b.T


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): image -> its text and text -> its image, averaged."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2


def train_maps(image_vectors: np.ndarray, text_vectors: np.ndarray, options: AlignOptions,
               groups: list[Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train the two maps on paired rows; the held-out share measures retrieval
    (recall@k of each text's own photo, and with `groups`, e.g. labels, of a photo of
    the same group) against chance."""
    pairs = len(image_vectors)
    if pairs < options.min_pairs:
        raise AlignmentError(f"{pairs} (photo, text) pairs; at least {options.min_pairs} are needed")
    rng = random.Random(options.seed)
    order = list(range(pairs))
    rng.shuffle(order)
    held = order[:int(pairs * options.holdout)] if pairs * options.holdout >= 4 else []
    train = [i for i in order if i not in set(held)]
    torch.manual_seed(options.seed)
    images, texts = torch.from_numpy(image_vectors).float(), torch.from_numpy(text_vectors).float()
    maps = _Maps(images.shape[1], texts.shape[1], min(options.dim, max(images.shape[1], texts.shape[1])))
    optimiser = torch.optim.AdamW(maps.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    for _ in range(options.epochs):
        rng.shuffle(train)
        for start in range(0, len(train), options.batch_size):
            rows = train[start:start + options.batch_size]
            if len(rows) < 2:
                continue
            loss = info_nce(maps(images[rows], texts[rows]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    arrays = {name: value.detach().numpy().astype(np.float32) for name, value in maps.state_dict().items()}
    metrics = {"pairs": pairs, "train_pairs": len(train), "heldout_pairs": len(held), "epochs": options.epochs,
               "temperature": float(1 / math.exp(float(arrays["logit_scale"]))), "train_loss": _loss(maps, images, texts, train)}
    if held:
        metrics["heldout"] = retrieval_metrics(arrays, image_vectors[held], text_vectors[held],
                                               [groups[i] for i in held] if groups is not None else None)
    return arrays, metrics


@torch.no_grad()
def _loss(maps: _Maps, images: torch.Tensor, texts: torch.Tensor, rows: list[int]) -> float:
    return float(info_nce(maps(images[rows], texts[rows])))


def project(arrays: dict[str, np.ndarray], side: str, vectors: np.ndarray) -> np.ndarray:
    """Vectors of one side ("image" or "text") in the shared space, L2-normalised."""
    mapped = np.atleast_2d(vectors).astype(np.float32) @ arrays[f"{side}.weight"].T + arrays[f"{side}.bias"]
    return mapped / np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)


def retrieval_metrics(arrays: dict[str, np.ndarray], image_vectors: np.ndarray, text_vectors: np.ndarray,
                      groups: list[Any] | None = None, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """Text-to-image retrieval among the rows given: recall@k of each text's own photo
    (chance: k / rows), and the share of the top k in the text's group (chance: the
    group's share of the rows)."""
    scores = project(arrays, "text", text_vectors) @ project(arrays, "image", image_vectors).T
    ranking = np.argsort(-scores, axis=1)
    rows = len(image_vectors)
    report: dict[str, Any] = {"rows": rows}
    for k in ks:
        if k > rows:
            continue
        report[f"recall@{k}"] = float(np.mean([row in ranking[row, :k] for row in range(rows)]))
        report[f"random_recall@{k}"] = k / rows
        if groups is not None:
            report[f"group_precision@{k}"] = float(np.mean([np.mean([groups[j] == groups[row] for j in ranking[row, :k]])
                                                            for row in range(rows)]))
    if groups is not None:
        report["random_group_precision"] = float(np.mean([np.mean([g == groups[row] for g in groups]) for row in range(rows)]))
    return report


# -- vectors of the pairs ----------------------------------------------------------------------


def paired_vectors(predictor: Any, samples: list[Sample], text_kind: str, batch_size: int = 64
                   ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(image vectors, text vectors, row numbers used) of the samples that have both the
    image and the text input, from the model version's own predictor pass."""
    image_rows, text_rows, used = [], [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        encoded = [predictor.preprocess(sample) for sample in chunk]
        for offset, prediction in enumerate(predictor.predict_encoded(encoded, contributions=False)):
            vectors = prediction.embeddings
            if "image" in vectors and text_kind in vectors:
                image_rows.append(vectors["image"])
                text_rows.append(vectors[text_kind])
                used.append(start + offset)
    if not used:
        raise AlignmentError(f"no sample has both a photo and a {text_kind!r} text the model reads")
    return np.stack(image_rows).astype(np.float32), np.stack(text_rows).astype(np.float32), used


def text_kind_of(spec: Any, requested: str | None) -> str:
    """The text input whose vectors are aligned with the photos."""
    if spec is None:
        raise AlignmentError("this model version has no network, so it gives no image and text vectors to align")
    texts = [m for m in spec.modalities if m != "image"]
    if "image" not in spec.modalities or not texts:
        raise AlignmentError(f"the model reads {spec.modalities}; an aligned space needs the image and a text")
    if requested is None:
        return texts[0]
    if requested not in texts:
        raise AlignmentError(f"the model has no text input {requested!r}; it has {', '.join(texts)}")
    return requested


def align_model(bundle: str | Path, samples: list[Sample], out_dir: str | Path, options: AlignOptions | None = None,
                *, groups: list[Any] | None = None, predictor: Any | None = None) -> AlignResult:
    """Train a space for the model version in `bundle` on the samples' (photo, text) pairs."""
    from twinlens.engine.predictor import Predictor

    options = options or AlignOptions()
    predictor = predictor or Predictor.from_bundle(bundle, device="cpu")
    text_kind = text_kind_of(predictor.spec, options.text_field)
    images, texts, used = paired_vectors(predictor, samples, text_kind)
    arrays, metrics = train_maps(images, texts, options, [groups[i] for i in used] if groups is not None else None)
    config = {"format": FORMAT, "base": "model", "plugin": predictor.plugin_name, "model_version": predictor.version,
              "text_kind": text_kind, "input_dim": {"image": int(images.shape[1]), "text": int(texts.shape[1])},
              "dim": int(arrays["image.weight"].shape[0]), "options": asdict(options), "metrics": metrics}
    return save_alignment(out_dir, arrays, config)


def align_clip(clip_dir: str | Path, samples: list[Sample], text_field: str, out_dir: str | Path,
               options: AlignOptions | None = None, *, groups: list[Any] | None = None) -> AlignResult:
    """Train a space on a local Hugging Face CLIP folder's image and text features (no download)."""
    options = options or AlignOptions()
    images, texts, used = clip_vectors(clip_dir, samples, text_field)
    arrays, metrics = train_maps(images, texts, options, [groups[i] for i in used] if groups is not None else None)
    config = {"format": FORMAT, "base": "clip", "clip_path": str(clip_dir), "text_kind": text_field,
              "input_dim": {"image": int(images.shape[1]), "text": int(texts.shape[1])},
              "dim": int(arrays["image.weight"].shape[0]), "options": asdict(options), "metrics": metrics}
    return save_alignment(out_dir, arrays, config)


@torch.no_grad()
def clip_vectors(clip_dir: str | Path, samples: list[Sample], text_field: str, batch_size: int = 32
                 ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """CLIP's projected image and text features of the samples with both (local files only)."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(str(clip_dir), local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(str(clip_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise AlignmentError(f"{clip_dir} is not a CLIP folder this transformers can read: {exc}") from exc
    used = [i for i, s in enumerate(samples) if s.image is not None and s.texts.get(text_field)]
    if not used:
        raise AlignmentError(f"no sample has both a photo and a {text_field!r} text")
    images, texts = [], []
    for start in range(0, len(used), batch_size):
        rows = [samples[i] for i in used[start:start + batch_size]]
        inputs = processor(text=[r.texts[text_field] for r in rows], images=[r.image.convert("RGB") for r in rows],
                           return_tensors="pt", padding=True, truncation=True)
        images.append(_features(model.get_image_features(pixel_values=inputs["pixel_values"])))
        texts.append(_features(model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])))
    return np.concatenate(images), np.concatenate(texts), used


def _features(output: Any) -> np.ndarray:
    tensor = output if isinstance(output, torch.Tensor) else getattr(output, "pooler_output", output[0])
    return tensor.float().numpy()


# -- the folder ------------------------------------------------------------------------------------


def save_alignment(out_dir: str | Path, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> AlignResult:
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    save_file({name: np.ascontiguousarray(value) for name, value in arrays.items()}, str(weights))
    config = {**config, "files": {WEIGHTS_NAME: hashlib.sha256(weights.read_bytes()).hexdigest()}}
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return AlignResult(out, arrays, config)


def load_alignment(folder: str | Path) -> AlignResult:
    """Read a folder `align_*` wrote, checking its weights against their recorded digest."""
    from safetensors.numpy import load_file

    root = Path(folder)
    try:
        config = json.loads((root / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AlignmentError(f"{root} is not an alignment folder: {exc}") from exc
    if config.get("format") != FORMAT:
        raise AlignmentError(f"{root}: unknown alignment format {config.get('format')!r}")
    data = (root / WEIGHTS_NAME).read_bytes()
    if hashlib.sha256(data).hexdigest() != config.get("files", {}).get(WEIGHTS_NAME):
        raise BundleError(f"{root}: {WEIGHTS_NAME} fails its hash: the folder was modified after it was saved")
    arrays = {name: np.asarray(value, dtype=np.float32) for name, value in load_file(str(root / WEIGHTS_NAME)).items()}
    return AlignResult(root, arrays, config)
