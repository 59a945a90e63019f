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
            tokens = self.image_encoder(inputs["pixels"])
            return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        mask = inputs["attention_mask"].bool()
        return self.text_encoder(inputs["input_ids"], inputs["attention_mask"]), mask

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
        tokens = projected.new_zeros(size, projected.shape[1], projected.shape[2]).index_copy(0, rows, projected)
        mask = raw_mask.new_zeros(size, raw_mask.shape[1]).index_copy(0, rows, raw_mask)
        # Rows without this modality carry only the learned "missing" token.
        missing_rows = ~present
        first = torch.zeros_like(mask)
        first[:, 0] = True
        tokens = torch.where(missing_rows[:, None, None], torch.where(first[..., None], missing_token, 0.0), tokens)
        mask = torch.where(missing_rows[:, None], first, mask)
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
