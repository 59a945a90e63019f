"""Training: AdamW (lower LR for pretrained encoders), warmup + cosine, AMP on GPU,
modality dropout, class weights or focal loss, early stopping on a validation metric,
temperature scaling, and a bundle written at the end."""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from twinlens.engine.augment import augment_pixels
from twinlens.engine.bundle import refuse_foreign_folder, save_bundle
from twinlens.engine.calibration import fit_temperature
from twinlens.engine.data import Preprocessor, Targets, batches, collate, encode_targets, regression_stats
from twinlens.engine.encoders import load_tokenizer
from twinlens.engine.heads import HeadLoss
from twinlens.engine.inference import attach_cache, autocast_for, frozen_encoder_cache, infer_logits, pick_device
from twinlens.engine.model import build_model
from twinlens.contract.plugin import Dataset, Plugin
from twinlens.engine.reporting import outputs_report
from twinlens.engine.metrics import monitored_value
from twinlens.contract.spec import ModelSpec, TrainConfig


# Under a time limit, computing frozen encoders' features may take at most this share of
# it; the rest is for the epochs that learn from them.
FROZEN_CACHE_SHARE = 0.4
MIN_CACHED_TRAIN_ROWS = 256


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
    """Train one network (the `network` preset) and write its bundle."""
    spec = spec or plugin.default_model_spec()
    config = config or plugin.training_defaults()
    refuse_foreign_folder(Path(out_dir))  # before spending the training time
    seed_everything(config.seed)
    if val is None:
        train, val = split_dataset(train, config.val_fraction, config.seed)
    fitted = fit_network(train, val, spec, config, device)
    bundle_config = fitted.save(Path(out_dir), plugin)
    return TrainResult(Path(out_dir), {**fitted.report, "version": bundle_config["version"]}, fitted.history)


@dataclass
class FittedNetwork:
    """A trained network still in memory: its validation outputs, report and a way to save."""

    run: "_TrainingRun"
    history: list[dict[str, Any]]
    temperatures: dict[str, float]
    report: dict[str, Any]
    train_size: int
    val_size: int

    def save(self, out_dir: Path, plugin: Plugin, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        run = self.run
        return save_bundle(Path(out_dir), run.model, run.tokenizer, {
            "plugin": plugin.name,
            "plugin_version": plugin.version,
            "train_config": run.config.model_dump(mode="json"),
            "temperatures": self.temperatures,
            "regression_stats": run.stats,
            "metrics": {"validation": self.report},
            "history": self.history,
            "data": {"train": self.train_size, "validation": self.val_size},
            **(extra or {}),
        })

    def val_outputs(self, modalities: list[str] | None = None) -> dict[str, np.ndarray]:
        """Calibrated validation outputs (frozen encoders' cached features reused)."""
        return self.outputs_on(self.run.val_encoded, self.run.val_cache, modalities)

    def encode(self, samples: list) -> tuple[list, Any]:
        """Other rows, encoded once for `outputs_on` (with their frozen encoders' features)."""
        run = self.run
        encoded = run.pre.encode_many(samples)
        return encoded, frozen_encoder_cache(run.model, run.pre, encoded, run.device)

    def outputs_on(self, encoded: list, cache: Any, modalities: list[str] | None = None) -> dict[str, np.ndarray]:
        """Calibrated outputs on encoded rows (`encode`), optionally seeing only `modalities`."""
        from twinlens.engine.reporting import calibrated_outputs

        run = self.run
        logits = infer_logits(run.model, run.pre, encoded, device=run.device, cache=cache,
                              batch_size=max(64, run.config.batch_size), modalities=modalities, amp=run.config.amp)
        return {k: v.numpy() for k, v in calibrated_outputs(run.schema, logits, self.temperatures, run.stats).items()}

    def predictor(self, plugin: Plugin):
        """A Predictor over the in-memory model (what the saved bundle will load as)."""
        from twinlens.engine.predictor import Predictor

        config = {"plugin": plugin.name, "version": "unsaved", "temperatures": self.temperatures, "regression_stats": self.run.stats}
        return Predictor(self.run.model, self.run.tokenizer, config, self.run.device)


def fit_network(train: Dataset, val: Dataset, spec: ModelSpec, config: TrainConfig, device: str | None = None) -> FittedNetwork:
    seed_everything(config.seed)
    spec = fit_image_slots(spec, [*train.samples, *val.samples])
    run = _TrainingRun(spec, config, train, val, pick_device(device))
    history = run.fit()
    temperatures = run.calibrate()
    return FittedNetwork(run, history, temperatures, run.report(temperatures), len(run.rows_used), len(val.samples))


def fit_image_slots(spec: ModelSpec, samples: list) -> ModelSpec:
    """The spec with as many image slots as the data's cases have images, up to the
    spec's (the plugin's) maximum: single-image data gives the single-image model of old
    (same parameters, ONNX export), several images per case one slot each."""
    most = max((len(sample.images) for sample in samples), default=1)
    slots = max(1, min(spec.max_images, most))
    if slots == spec.max_images:
        return spec
    return spec.model_copy(update={"max_images": slots, "image_views": spec.image_views[:slots]})


class _TrainingRun:
    def __init__(self, spec: ModelSpec, config: TrainConfig, train: Dataset, val: Dataset, device: torch.device):
        self.created = time.monotonic()
        self.spec, self.config, self.device = spec, config, device
        self.schema = train.label_schema
        self.tokenizer = load_tokenizer(spec.text_encoder.name)
        self.model = build_model(spec, self.schema, seed=config.seed).to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.pre = Preprocessor(spec, self.tokenizer)
        self.stats = regression_stats(train.samples, self.schema)
        self.val_encoded = self.pre.encode_many(val.samples)
        self.val_targets = encode_targets(val.samples, self.schema, self.stats, "ignore")
        encoding = time.monotonic()
        self.val_cache = frozen_encoder_cache(self.model, self.pre, self.val_encoded, device)
        per_row = (time.monotonic() - encoding) / max(1, len(val.samples)) if self.val_cache is not None else 0.0
        self.rows_used = self._rows_the_cache_can_take(train.samples, per_row)
        train_samples = [train.samples[i] for i in self.rows_used]
        self.train_encoded = self.pre.encode_many(train_samples)
        self.train_targets = encode_targets(train_samples, self.schema, self.stats, config.uncertain_policy)
        self.train_cache = frozen_encoder_cache(self.model, self.pre, self.train_encoded, device)
        self.losses = {t.name: HeadLoss(t, kind=config.loss, gamma=config.focal_gamma, class_weight=self._class_weight(t.name)).to(device) for t in self.schema.tasks}
        self.generator = torch.Generator().manual_seed(config.seed)

    def _rows_the_cache_can_take(self, samples: list, seconds_per_row: float) -> list[int]:
        """All training rows, or under a time limit a random sample of those whose frozen
        features can be computed in `FROZEN_CACHE_SHARE` of it (at the validation rows' pace).

        The features are computed once before the first epoch; on a large set that alone
        outlasted the limit (13,763 posts: over two minutes of a five-minute limit on two
        cores), and a run that trains within its limit on part of the rows beats one that
        ends long after it on all of them."""
        everything = list(range(len(samples)))
        limit = self.config.time_limit_seconds
        if limit is None or seconds_per_row <= 0:
            return everything
        left = FROZEN_CACHE_SHARE * limit - (time.monotonic() - self.created)
        fits = max(MIN_CACHED_TRAIN_ROWS, int(left / seconds_per_row))
        if fits >= len(samples):
            return everything
        picked = np.random.default_rng(self.config.seed).choice(len(samples), fits, replace=False)
        return sorted(int(i) for i in picked)

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
        pretrained = {id(p) for enc, s in encoders if _is_pretrained(s) for p in enc.parameters()}
        trainable = [p for p in self.model.parameters() if id(p) not in frozen and p.requires_grad]
        layered = self._text_layer_groups()
        in_layers = {id(p) for group in layered for p in group["params"]}
        groups = [{"params": [p for p in trainable if id(p) not in pretrained and id(p) not in in_layers], "lr": self.config.lr}]
        slow = [p for p in trainable if id(p) in pretrained and id(p) not in in_layers]
        if slow:
            groups.append({"params": slow, "lr": self.config.encoder_lr})
        groups += layered
        optimizer = torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)
        self.total_steps = total_steps  # shortened once a time limit shows fewer epochs fit

        def schedule(step: int) -> float:
            warmup = max(1, int(self.total_steps * self.config.warmup_ratio))
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, self.total_steps - warmup)))))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def _text_layer_groups(self) -> list[dict[str, Any]]:
        """Fine-tuned top text layers: the top one at the encoder's rate, each lower one at
        `layer_lr_decay` times the one above (layer-wise learning-rate decay)."""
        text = self.spec.text_encoder
        if not text.train_top_layers or text.freeze:
            return []
        base = self.config.encoder_lr if _is_pretrained(text) else self.config.lr
        return [{"params": params, "lr": base * text.layer_lr_decay**depth}
                for depth, params in enumerate(self.model.text_encoder.layer_groups())]

    def fit(self) -> list[dict[str, Any]]:
        steps_per_epoch = math.ceil(len(self.train_encoded) / self.config.batch_size)
        optimizer, scheduler = self._optimizer(steps_per_epoch * self.config.epochs)
        best, best_state, stale, history = float("-inf"), None, 0, []
        self.planned_epochs = self.config.epochs
        started = time.monotonic()
        for epoch in range(1, self.config.epochs + 1):
            if epoch > self.planned_epochs:
                break
            loss = self._epoch(optimizer, scheduler, epoch)
            report = self.report({})
            score = monitored_value(report, self.config.monitor)
            history.append({"epoch": epoch, "train_loss": loss, "monitor": self.config.monitor, "value": score})
            if epoch == 1:
                self._plan_epochs(time.monotonic() - started, steps_per_epoch)
            if score > best:
                best, best_state, stale = score, copy.deepcopy(self.model.state_dict()), 0
            else:
                stale += 1
                if stale >= self.config.patience:
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return history

    def _plan_epochs(self, epoch_seconds: float, steps_per_epoch: int) -> None:
        """With a time limit, plan only the epochs that fit (the first one is measured)."""
        limit = self.config.time_limit_seconds
        if limit is None:
            return
        # The limit counts from the run's creation: preprocessing and caching spend it too.
        left = limit - (time.monotonic() - self.created)
        self.planned_epochs = max(1, min(self.config.epochs, 1 + int(max(left, 0.0) // max(epoch_seconds, 1e-3))))
        self.total_steps = steps_per_epoch * self.planned_epochs

    def _epoch(self, optimizer, scheduler, epoch: int) -> float:
        self.model.train()
        total, count = 0.0, 0
        order = list(batches(len(self.train_encoded), self.config.batch_size, self.generator))
        label = f"{self.config.progress_label} " if self.config.progress_label else ""
        bar = tqdm(order, desc=f"{label}epoch {epoch}/{getattr(self, 'planned_epochs', self.config.epochs)}",
                   disable=not self.config.progress, leave=False)
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
        pixels = inputs["pixels"]
        if pixels.dim() == 5:  # several image slots: each image augmented on its own
            flat = augment_pixels(pixels.flatten(0, 1), self.pre.mean, self.pre.std, augment, self.generator)
            inputs["pixels"] = flat.view(pixels.shape)
            return
        inputs["pixels"] = augment_pixels(pixels, self.pre.mean, self.pre.std, augment, self.generator)

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


def _is_pretrained(encoder_spec) -> bool:
    return bool(encoder_spec.pretrained) and not getattr(encoder_spec, "config_overrides", None)


__all__ = ["TrainResult", "train_model", "fit_network", "FittedNetwork", "split_dataset", "seed_everything", "Targets"]
