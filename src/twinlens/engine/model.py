"""The fusion model: encoders -> per-modality tokens -> fusion strategy -> named heads."""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

from twinlens.engine.encoders import ImageEncoder, TextEncoder
from twinlens.engine.encoders.text import config_from_dict
from twinlens.engine.fusion import ModalityTokens, build_fusion
from twinlens.engine.heads import Head
from twinlens.contract.schema import LabelSchema
from twinlens.contract.spec import ModelSpec


class FusionModel(nn.Module):
    """Multimodal, multi-task model.

    Every modality of `spec.all_modalities()` exists in the architecture; those outside
    `spec.modalities` are always treated as missing, which makes single-modality models
    the same architecture as the fused one.
    """

    def __init__(
        self,
        spec: ModelSpec,
        label_schema: LabelSchema,
        *,
        load_pretrained: bool = True,
        text_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.label_schema = label_schema
        dim = spec.hidden_dim
        self.image_encoder = ImageEncoder(spec.image_encoder, load_weights=load_pretrained)
        config = config_from_dict(text_config) if text_config else None
        self.text_encoder = TextEncoder(spec.text_encoder, config=config, load_weights=load_pretrained)
        self.projections = nn.ModuleDict({"image": self._projection(self.image_encoder.num_features, dim)})
        for name in spec.text_inputs:
            self.projections[name] = self._projection(self.text_encoder.num_features, dim)
        self.feature_dropout = nn.Dropout(spec.feature_dropout)
        if spec.lexical_buckets:
            # Shared by every text input, like the text encoder; one projection per input.
            self.lexical = nn.EmbeddingBag(spec.lexical_buckets, spec.lexical_dim, mode="sum")
            nn.init.normal_(self.lexical.weight, std=0.02)
            self.lexical_projections = nn.ModuleDict({name: self._projection(spec.lexical_dim, dim) for name in spec.text_inputs})
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(dim) * 0.02) for m in spec.all_modalities()})
        if spec.max_images > 1:
            # Only multi-image models have these: a single-image model keeps exactly the
            # parameters it always had, so its bundles load strictly and predict the same.
            self.image_slots = nn.Parameter(torch.randn(spec.max_images, dim) * 0.02)
            if spec.image_pool == "attention":
                self.image_pool_score = nn.Linear(dim, 1)
        self.fusion = build_fusion(spec.fusion, spec.all_modalities(), dim, spec.dropout, spec.fusion_options)
        self.heads = nn.ModuleDict({task.name: Head(task, dim, spec.dropout) for task in label_schema.tasks})

    @staticmethod
    def _projection(in_dim: int, dim: int) -> nn.Module:
        return nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim))

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.image_encoder.parameters(), *self.text_encoder.parameters()]

    def encode_raw(self, modality: str, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one modality's encoder on the rows given; returns (tokens, token mask)."""
        if modality == "image":
            if inputs["pixels"].dim() == 5:
                return self._encode_slots(inputs["pixels"], inputs["image_mask"].bool())
            tokens = self.image_encoder(inputs["pixels"])
            return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        mask = inputs["attention_mask"].bool()
        return self.text_encoder(inputs["input_ids"], inputs["attention_mask"]), mask

    def _encode_slots(self, pixels: torch.Tensor, filled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image of every row through the encoder once, as one batch; returns the
        slots' tokens side by side (R, K*T, F) and their mask (empty slots False)."""
        rows, slots = filled.shape
        images = pixels[filled] if bool(filled.any()) else pixels[:1, 0]  # one image just for the shape
        encoded = self.image_encoder(images)
        length, width = encoded.shape[1], encoded.shape[2]
        tokens = encoded.new_zeros(rows, slots, length, width)
        if bool(filled.any()):
            tokens[filled] = encoded
        mask = filled.repeat_interleave(length, dim=1)
        return tokens.view(rows, slots * length, width), mask

    def slot_length(self, tokens: torch.Tensor) -> int:
        """Tokens per image slot in a multi-image model's image sequence."""
        return tokens.shape[1] // self.spec.max_images

    def pool_images(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The image modality as one vector by learned attention over its images (each
        image: the mean of its tokens); None when the spec pools by mean (the masked mean
        of all tokens is then the mean over images)."""
        if self.spec.max_images == 1 or self.spec.image_pool != "attention":
            return None
        return self.image_weights(tokens, mask)[1]

    def image_weights(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's attention weight (B, K; 0 for empty slots) and the pooled vector."""
        size, slots = tokens.shape[0], self.spec.max_images
        per_slot = tokens.view(size, slots, -1, tokens.shape[-1])
        slot_mask = mask.view(size, slots, -1)
        vectors = (per_slot * slot_mask.unsqueeze(-1)).sum(2) / slot_mask.sum(2, keepdim=True).clamp_min(1)
        scores = self.image_pool_score(vectors).squeeze(-1).masked_fill(~slot_mask.any(2), float("-inf"))
        weights = torch.softmax(scores.float(), dim=1).to(vectors.dtype)
        return weights, (weights.unsqueeze(-1) * vectors).sum(1)

    def without_image(self, features: dict[str, ModalityTokens], slot: int) -> dict[str, ModalityTokens]:
        """`features` with one image slot emptied in every row (no encoder re-run); a row
        left with no image shows the image modality as missing."""
        image = features["image"]
        if not bool(image.present.any()):  # no row has an image: nothing to empty
            return features
        length = self.slot_length(image.tokens)
        mask = image.mask.clone()
        mask[:, slot * length:(slot + 1) * length] = False
        still = image.present & mask.any(1)
        tokens, mask = self._missing_where(~still, image.tokens, mask, "image")
        return {**features, "image": ModalityTokens(tokens, mask, still, self.pool_images(tokens, mask))}

    def _missing_where(self, rows: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, modality: str):
        """Tokens and mask where the `rows` carry only the learned missing token."""
        first = torch.zeros_like(mask)
        first[:, 0] = True
        missing_token = self.missing[modality].view(1, 1, -1)
        tokens = torch.where(rows[:, None, None], torch.where(first[..., None], missing_token, 0.0), tokens)
        return tokens, torch.where(rows[:, None], first, mask)

    def forward(self, batch: dict[str, Any], present: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """`batch` from twinlens.engine.data.collate; `present` overrides which modalities
        each row has (masking for contributions, modality dropout in training)."""
        return self.heads_from(self.encode(batch, present))

    def encode(self, batch: dict[str, Any], present: dict[str, torch.Tensor] | None = None) -> dict[str, ModalityTokens]:
        """Each modality's projected tokens; missing rows carry the learned missing token."""
        present = present or batch["present"]
        return {m: self._modality_tokens(m, batch, present[m]) for m in self.spec.all_modalities()}

    def heads_from(self, features: dict[str, ModalityTokens]) -> dict[str, torch.Tensor]:
        fused = self.fusion(features)
        return {name: head(fused) for name, head in self.heads.items()}

    def only(self, features: dict[str, ModalityTokens], modality: str) -> dict[str, ModalityTokens]:
        """`features` with every modality but `modality` shown as missing (no encoder re-run)."""
        return {m: tokens if m == modality else self._all_missing(m, tokens.present) for m, tokens in features.items()}

    def without(self, features: dict[str, ModalityTokens], modality: str) -> dict[str, ModalityTokens]:
        """`features` with `modality` shown as missing in every row (no encoder re-run): the
        same tokens `encode` gives when that modality is masked out."""
        return {m: self._all_missing(m, tokens.present) if m == modality else tokens for m, tokens in features.items()}

    def _all_missing(self, modality: str, like: torch.Tensor) -> ModalityTokens:
        size = like.shape[0]
        tokens = self.missing[modality].view(1, 1, -1).expand(size, 1, -1)
        mask = torch.ones(size, 1, dtype=torch.bool, device=tokens.device)
        return ModalityTokens(tokens, mask, torch.zeros_like(like))

    def _modality_tokens(self, modality: str, batch: dict[str, Any], present: torch.Tensor) -> ModalityTokens:
        size = present.shape[0]
        if modality not in self.spec.modalities:
            present = torch.zeros_like(present)
        rows = present.nonzero().squeeze(1)
        missing_token = self.missing[modality].view(1, 1, -1)
        if rows.numel() == 0:
            return self._all_missing(modality, present)
        raw, raw_mask = self._raw_for_rows(modality, batch, rows)
        projected = self.projections[modality](self.feature_dropout(raw.to(missing_token.dtype)))
        if modality != "image" and self.spec.lexical_buckets:
            projected = projected + self._lexical_vector(modality, batch, rows).unsqueeze(1)
        if modality == "image" and self.spec.max_images > 1:
            # Which slot (view) each image came from: a learned embedding per slot.
            projected = projected + self.image_slots.repeat_interleave(self.slot_length(projected), 0).to(projected.dtype)
        tokens = projected.new_zeros(size, projected.shape[1], projected.shape[2]).index_copy(0, rows, projected)
        mask = raw_mask.new_zeros(size, raw_mask.shape[1]).index_copy(0, rows, raw_mask)
        # Rows without this modality carry only the learned "missing" token.
        tokens, mask = self._missing_where(~present, tokens, mask, modality)
        if modality == "image":
            return ModalityTokens(tokens, mask, present, self.pool_images(tokens, mask))
        return ModalityTokens(tokens, mask, present)

    def _lexical_vector(self, modality: str, batch: dict[str, Any], rows: torch.Tensor) -> torch.Tensor:
        """The text's hashed n-grams as one vector, added to each of its tokens."""
        inputs = batch["inputs"][modality]
        ids, weights = inputs["lexical_ids"][rows], inputs["lexical_weights"][rows]
        bag = self.lexical(ids, per_sample_weights=weights.to(self.lexical.weight.dtype))
        return self.lexical_projections[modality](bag)

    def _raw_for_rows(self, modality: str, batch: dict[str, Any], rows: torch.Tensor):
        cached = batch.get("cached", {}).get(modality)
        if cached is not None:  # frozen encoder outputs computed once before training
            tokens, mask = cached
            return tokens[rows], mask[rows]
        inputs = batch["inputs"][modality]
        selected = {key: value[rows] for key, value in inputs.items() if not key.startswith("lexical_")}
        if modality != "image":
            selected = _trim_padding(selected)
        frozen = self._is_frozen(modality)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            return self.encode_raw(modality, selected)

    def _is_frozen(self, modality: str) -> bool:
        encoder = self.spec.image_encoder if modality == "image" else self.spec.text_encoder
        return encoder.freeze


def _trim_padding(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop padding columns no selected row uses (rows were padded to the batch maximum)."""
    length = int(inputs["attention_mask"].sum(1).max().clamp_min(1))
    return {key: value[:, :length] for key, value in inputs.items()}


# Building a model draws its initial weights from torch's process-wide generator. Builds take
# this lock, so a worker thread loading a bundle cannot draw in the middle of a seeded build.
_BUILD_LOCK = threading.Lock()


def build_model(spec: ModelSpec, schema: LabelSchema, *, seed: int | None = None, **options: Any) -> FusionModel:
    """A FusionModel whose initial weights depend on `seed` alone (when given). The build runs
    on a private copy of the generator's state, so it never shifts the random numbers of the
    code around it either (a bundle load's throwaway initial weights included)."""
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return FusionModel(spec, schema, **options)
