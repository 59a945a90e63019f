"""Training: AdamW (lower LR for pretrained encoders), warmup + cosine, AMP on GPU,
modality dropout, class weights or focal loss, early stopping on a validation metric,
temperature scaling, and a bundle written at the end."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from twinlens.core.augment import augment_pixels
from twinlens.core.bundle import refuse_foreign_folder, save_bundle
from twinlens.core.calibration import fit_temperature
from twinlens.core.data import Preprocessor, Targets, batches, collate, encode_targets, regression_stats
from twinlens.core.encoders import load_tokenizer
from twinlens.core.heads import HeadLoss
from twinlens.core.inference import attach_cache, autocast_for, frozen_encoder_cache, infer_logits, pick_device
from twinlens.core.model import FusionModel
from twinlens.core.plugin import Dataset, Plugin
from twinlens.core.reporting import outputs_report
from twinlens.core.metrics import monitored_value
from twinlens.core.spec import ModelSpec, TrainConfig


@dataclass
class TrainResult:
    bundle_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_dataset(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    order = np.random.default_rng(seed).permutation(len(dataset.samples))
    cut = max(1, int(round(len(order) * fraction)))
    pick = lambda rows: [dataset.samples[i] for i in sorted(rows)]  # noqa: E731
    return (Dataset(pick(order[cut:]), dataset.label_schema), Dataset(pick(order[:cut]), dataset.label_schema))


def train_model(
    plugin: Plugin,
    train: Dataset,
    *,
    out_dir: Path,
    val: Dataset | None = None,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    device: str | None = None,
) -> TrainResult:
    spec = spec or plugin.default_model_spec()
    config = config or plugin.training_defaults()
    refuse_foreign_folder(Path(out_dir))  # before spending the training time
    seed_everything(config.seed)
    if val is None:
        train, val = split_dataset(train, config.val_fraction, config.seed)
    run = _TrainingRun(spec, config, train, val, pick_device(device))
    history = run.fit()
    temperatures = run.calibrate()
    report = run.report(temperatures)
    bundle_config = save_bundle(Path(out_dir), run.model, run.tokenizer, {
        "plugin": plugin.name,
        "plugin_version": plugin.version,
        "train_config": config.model_dump(mode="json"),
        "temperatures": temperatures,
        "regression_stats": run.stats,
        "metrics": {"validation": report},
        "history": history,
        "data": {"train": len(train.samples), "validation": len(val.samples)},
    })
    return TrainResult(Path(out_dir), {**report, "version": bundle_config["version"]}, history)


class _TrainingRun:
    def __init__(self, spec: ModelSpec, config: TrainConfig, train: Dataset, val: Dataset, device: torch.device):
        self.spec, self.config, self.device = spec, config, device
        self.schema = train.label_schema
        self.tokenizer = load_tokenizer(spec.text_encoder.name)
        self.model = FusionModel(spec, self.schema).to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.pre = Preprocessor(spec, self.tokenizer)
        self.stats = regression_stats(train.samples, self.schema)
        self.train_encoded = self.pre.encode_many(train.samples)
        self.val_encoded = self.pre.encode_many(val.samples)
        self.train_targets = encode_targets(train.samples, self.schema, self.stats, config.uncertain_policy)
        self.val_targets = encode_targets(val.samples, self.schema, self.stats, "ignore")
        self.train_cache = frozen_encoder_cache(self.model, self.pre, self.train_encoded, device)
        self.val_cache = frozen_encoder_cache(self.model, self.pre, self.val_encoded, device)
        self.losses = {t.name: HeadLoss(t, kind=config.loss, gamma=config.focal_gamma, class_weight=self._class_weight(t.name)).to(device) for t in self.schema.tasks}
        self.generator = torch.Generator().manual_seed(config.seed)

    def _class_weight(self, task_name: str) -> torch.Tensor | None:
        task = self.schema.task(task_name)
        if not self.config.class_weights or task.kind == "regression":
            return None
        target, mask = self.train_targets.values[task_name], self.train_targets.masks[task_name]
        if task.kind == "multiclass":
            counts = torch.bincount(target[mask], minlength=task.output_size).float().clamp_min(1.0)
            return counts.sum() / (len(counts) * counts)
        positives = (target * mask).sum(0).clamp_min(1.0)
        negatives = ((1 - target) * mask).sum(0).clamp_min(1.0)
        return (negatives / positives).clamp(max=50.0)

    def _optimizer(self, total_steps: int):
        encoders = ((self.model.image_encoder, self.spec.image_encoder), (self.model.text_encoder, self.spec.text_encoder))
        frozen = {id(p) for enc, s in encoders if s.freeze for p in enc.parameters()}
        # Pretrained encoders learn slower than freshly initialised parts.
        pretrained = {id(p) for enc, s in encoders if s.pretrained and not getattr(s, "config_overrides", None) for p in enc.parameters()}
        trainable = [p for p in self.model.parameters() if id(p) not in frozen]
        groups = [{"params": [p for p in trainable if id(p) not in pretrained], "lr": self.config.lr}]
        slow = [p for p in trainable if id(p) in pretrained]
        if slow:
            groups.append({"params": slow, "lr": self.config.encoder_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)
        warmup = max(1, int(total_steps * self.config.warmup_ratio))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def fit(self) -> list[dict[str, Any]]:
        steps_per_epoch = math.ceil(len(self.train_encoded) / self.config.batch_size)
        optimizer, scheduler = self._optimizer(steps_per_epoch * self.config.epochs)
        best, best_state, stale, history = float("-inf"), None, 0, []
        for epoch in range(1, self.config.epochs + 1):
            loss = self._epoch(optimizer, scheduler, epoch)
            report = self.report({})
            score = monitored_value(report, self.config.monitor)
            history.append({"epoch": epoch, "train_loss": loss, "monitor": self.config.monitor, "value": score})
            if score > best:
                best, best_state, stale = score, copy.deepcopy(self.model.state_dict()), 0
            else:
                stale += 1
                if stale >= self.config.patience:
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return history

    def _epoch(self, optimizer, scheduler, epoch: int) -> float:
        self.model.train()
        total, count = 0.0, 0
        order = list(batches(len(self.train_encoded), self.config.batch_size, self.generator))
        bar = tqdm(order, desc=f"epoch {epoch}/{self.config.epochs}", disable=not self.config.progress, leave=False)
        for rows in bar:
            loss = self._step(rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item() * len(rows), count + len(rows)
            bar.set_postfix(loss=f"{total / count:.4f}")
        return total / max(count, 1)

    def _step(self, rows: torch.Tensor) -> torch.Tensor:
        batch = collate([self.train_encoded[i] for i in rows], self.pre, self.device)
        attach_cache(batch, self.train_cache, rows, self.device)
        self._augment(batch)
        present = self._modality_dropout(batch["present"])
        targets, masks = self.train_targets.select(rows, self.device)
        with autocast_for(self.device, self.config.amp):
            features = self.model.encode(batch, present)
            outputs = self.model.heads_from(features)
        loss = self._loss(outputs, targets, masks)
        if self.config.unimodal_loss_weight > 0 and len(self.spec.modalities) > 1:
            loss = loss + self.config.unimodal_loss_weight * self._unimodal_loss(features, targets, masks)
        return loss

    def _loss(self, outputs, targets, masks, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Sum of the heads' losses, over `rows` (a bool per sample) when given."""
        total = 0.0
        for name, logits in outputs.items():
            mask = masks[name]
            if rows is not None:
                mask = mask & rows.view(-1, *([1] * (mask.dim() - 1)))
            total = total + self.losses[name](logits, targets[name], mask)
        return total

    def _unimodal_loss(self, features, targets, masks) -> torch.Tensor:
        """Mean over modalities of the loss with that modality alone, on the rows that have it.

        The fused loss alone lets an easy modality (pretrained text) carry the batch while
        a hard one (an image encoder learning from scratch) gets little gradient and stays
        weak exactly where the fused model needs it: tickets whose words say nothing.
        """
        losses = []
        for modality in self.spec.modalities:
            rows = features[modality].present
            if not bool(rows.any()):
                continue
            with autocast_for(self.device, self.config.amp):
                alone = self.model.heads_from(self.model.only(features, modality))
            losses.append(self._loss(alone, targets, masks, rows))
        return sum(losses) / max(len(losses), 1)

    def _augment(self, batch: dict[str, Any]) -> None:
        augment = self.config.augment
        # A cached (frozen) image encoder never sees pixels during training.
        if not augment.enabled or "image" not in self.spec.modalities or "image" in batch.get("cached", {}):
            return
        inputs = batch["inputs"]["image"]
        inputs["pixels"] = augment_pixels(inputs["pixels"], self.pre.mean, self.pre.std, augment, self.generator)

    def _modality_dropout(self, present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hide present modalities at random, never all of a sample's modalities."""
        rate = self.config.modality_dropout
        used = [m for m in self.spec.modalities]
        if rate <= 0 or len(used) < 2:
            return present
        dropped = {m: present[m] & (torch.rand(present[m].shape, generator=self.generator).to(present[m].device) >= rate) if m in used else present[m] for m in present}
        nothing_left = ~torch.stack([dropped[m] for m in used]).any(0)
        return {m: torch.where(nothing_left, present[m], dropped[m]) for m in present}

    def val_logits(self) -> dict[str, torch.Tensor]:
        return infer_logits(self.model, self.pre, self.val_encoded, device=self.device, cache=self.val_cache,
                            batch_size=max(64, self.config.batch_size), amp=self.config.amp)

    def calibrate(self) -> dict[str, float]:
        if not self.config.calibrate:
            return {t.name: 1.0 for t in self.schema.tasks}
        logits = self.val_logits()
        return {t.name: fit_temperature(t, logits[t.name], self.val_targets.values[t.name], self.val_targets.masks[t.name]) for t in self.schema.tasks}

    def report(self, temperatures: dict[str, float]) -> dict[str, Any]:
        return outputs_report(self.schema, self.val_logits(), self.val_targets, temperatures, self.stats)


__all__ = ["TrainResult", "train_model", "split_dataset", "seed_everything", "Targets"]
