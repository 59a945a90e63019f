"""Forward passes over encoded samples, shared by training, evaluation and the predictor."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from twinlens.engine.data import EncodedSample, Preprocessor, batches, collate
from twinlens.engine.embeddings import EmbeddingCollector, heads_and_fused
from twinlens.engine.model import FusionModel


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; plain fp32 on CPU where autocast gains nothing here."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def keep_only(present: dict[str, torch.Tensor], modalities: list[str] | None) -> dict[str, torch.Tensor]:
    if modalities is None:
        return present
    return {m: p if m in modalities else torch.zeros_like(p) for m, p in present.items()}


def attach_cache(batch: dict[str, Any], cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None, rows: torch.Tensor, device) -> None:
    if cache:
        batch["cached"] = {m: _cached_rows(tokens, mask, rows, device) for m, (tokens, mask) in cache.items()}


def _cached_rows(tokens: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' cached tokens, cut to the longest among them: the cache is padded to the
    longest row of the whole set, and fusion over padding is work that changes nothing."""
    picked = mask[rows]
    used = picked.any(0).nonzero()  # the last column any row uses (image slots may leave gaps)
    longest = int(used.max()) + 1 if len(used) else 1
    return tokens[rows, :longest].to(device).float(), picked[:, :longest].to(device)


@torch.inference_mode()
def infer_logits(
    model: FusionModel,
    pre: Preprocessor,
    encoded: list[EncodedSample],
    *,
    device: torch.device,
    batch_size: int = 64,
    modalities: list[str] | None = None,
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    amp: bool = True,
    embeddings: EmbeddingCollector | None = None,
) -> dict[str, torch.Tensor]:
    """Logits per head for every sample, in order; `modalities` masks out the others.
    `embeddings` (optional) collects each row's fused and per-modality vectors from the
    same pass (engine/embeddings.py)."""
    model.eval()
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in model.heads}
    for rows in batches(len(encoded), batch_size):
        batch = collate([encoded[i] for i in rows], pre, device)
        attach_cache(batch, cache, rows, device)
        with autocast_for(device, amp):
            if embeddings is None:
                _collect(collected, model(batch, keep_only(batch["present"], modalities)))
                continue
            features = model.encode(batch, keep_only(batch["present"], modalities))
            logits, fused = heads_and_fused(model, features)
            _collect(collected, logits)
            embeddings.add(fused, features, model.spec.modalities)
    return _joined(collected)


@torch.inference_mode()
def infer_masked_logits(
    model: FusionModel,
    pre: Preprocessor,
    encoded: list[EncodedSample],
    *,
    device: torch.device,
    masked: list[str],
    batch_size: int = 64,
    amp: bool = True,
    embeddings: EmbeddingCollector | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Logits with every input, and with each modality in `masked` removed in turn.

    The encoders run once per batch: removing a modality only swaps its tokens for the
    learned missing token, so the other modalities' encoder outputs are reused and only
    fusion and heads run again (the encoders are most of the cost)."""
    model.eval()
    full: dict[str, list[torch.Tensor]] = {name: [] for name in model.heads}
    without: dict[str, dict[str, list[torch.Tensor]]] = {m: {name: [] for name in model.heads} for m in masked}
    for rows in batches(len(encoded), batch_size):
        batch = collate([encoded[i] for i in rows], pre, device)
        with autocast_for(device, amp):
            features = model.encode(batch)
            logits, fused = heads_and_fused(model, features)
            _collect(full, logits)
            if embeddings is not None:
                embeddings.add(fused, features, model.spec.modalities)
            for modality in masked:
                _collect(without[modality], model.heads_from(_masked_features(model, features, modality)))
    return _joined(full), {m: _joined(parts) for m, parts in without.items()}


# A masked name of this form is one image slot of a multi-image model ("image#1": the
# second slot), masked alone, so contributions can say which image mattered most.
IMAGE_SLOT = "image#"


def image_slot_name(slot: int) -> str:
    return f"{IMAGE_SLOT}{slot}"


def _masked_features(model: FusionModel, features, modality: str):
    if modality.startswith(IMAGE_SLOT):
        return model.without_image(features, int(modality[len(IMAGE_SLOT):]))
    return model.without(features, modality)


def _collect(into: dict[str, list[torch.Tensor]], outputs: dict[str, torch.Tensor]) -> None:
    for name, logits in outputs.items():
        into[name].append(logits.float().cpu())


def _joined(parts: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.cat(chunks) if chunks else torch.empty(0) for name, chunks in parts.items()}


@torch.inference_mode()
def frozen_encoder_cache(model: FusionModel, pre: Preprocessor, encoded: list[EncodedSample], device, batch_size: int = 64):
    """Encoder outputs for frozen encoders, computed once (fp16 on CPU) for all epochs."""
    frozen = [m for m in model.spec.modalities if model._is_frozen(m)]
    if not frozen:
        return None
    model.eval()
    # Rows of like length share a batch, so short texts are not padded to a long one's
    # length (encoding time grows with the padded length); the cache keeps the rows' order.
    order = torch.tensor(sorted(range(len(encoded)), key=lambda i: _token_count(encoded[i])), dtype=torch.long)
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {m: [] for m in frozen}
    for rows in batches(len(encoded), batch_size):
        batch = collate([encoded[i] for i in order[rows].tolist()], pre, device)
        for m in frozen:
            tokens, mask = model.encode_raw(m, batch["inputs"][m])
            parts[m].append((order[rows], tokens.half().cpu(), mask.cpu()))
    return {m: _scatter_padded(chunks, len(encoded)) for m, chunks in parts.items()}


def _scatter_padded(chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One (rows, longest, width) tensor and its mask from batches of rows in any order."""
    length = max(tokens.shape[1] for _, tokens, _ in chunks)
    first = chunks[0][1]
    tokens_out = first.new_zeros((count, length, *first.shape[2:]))
    mask_out = torch.zeros((count, length), dtype=torch.bool)
    for rows, tokens, mask in chunks:
        tokens_out[rows, : tokens.shape[1]] = tokens
        mask_out[rows, : mask.shape[1]] = mask.bool()
    return tokens_out, mask_out


def _token_count(item: EncodedSample) -> int:
    return sum(len(ids) for ids in item.tokens.values() if ids is not None)
