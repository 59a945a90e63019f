"""The automatic training recipe (`twinlens train --preset auto`, the default).

On a few hundred real cases a network learning from scratch, or a frozen sentence encoder
that blurs away exact words and codes, often loses to a linear model on simple features.
So a training run here is a small model search within a time budget:

1. a validation split, grouped when the data names groups (a patient, an event) so no
   group lands on both sides, stratified on the first label task otherwise;
2. baselines: TF-IDF word + char n-grams with a linear model per text field, classical
   image features with a linear model, and one linear model on all of them;
3. the zero-shot classifier when the plugin's labels have descriptions;
4. a fused network whose settings follow the data (image size and epochs from the time
   left, class weights when classes are imbalanced, augmentation and the image-alone loss
   for images learned from scratch; images that repeat across many rows are left to the
   classical features instead of being re-encoded every epoch);
5. greedy ensemble selection (members added, with repetition, while the loss falls), a
   temperature per head on the mixture, and the rule that what ships is never worse than
   the best single candidate: when the ensemble does not beat it, that candidate alone
   ships and the report says so.

On small data (up to 2,000 rows) selection does not trust one validation split alone.
The linear baselines are cheap, so they are cross-fitted: the validation split is one
fold and the training rows are cut into more (by group where the data names groups), and
every row gets a prediction from a model that did not see it. Which baselines count, their regularisation and their weights
are then chosen on all the groups in the data, not on the few that landed in validation;
the network (too slow to train once per fold) is weighed on the validation rows it has.

Every candidate's validation report is kept in the bundle and printed side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from twinlens.engine.calibration import fit_temperature
from twinlens.engine.classical import image_features
from twinlens.engine.data import encode_targets
from twinlens.engine.ensemble import (CaseInputs, LinearMember, Member, NetworkMember, ZeroShotMember, calibrate, logits_of, mix, present_matrix,
                                      save_ensemble, temper_mixture)
from twinlens.engine.linear import C_GRID, LinearHeads, Standardiser, TfidfText, fit_head, is_imbalanced
from twinlens.engine.metrics import full_report, monitored_value
from twinlens.contract.plugin import Dataset, Plugin
from twinlens.contract.schema import LabelSchema
from twinlens.contract.spec import ModelSpec, TrainConfig

if TYPE_CHECKING:  # the training module pulls in the network; imported where a run needs it
    from twinlens.engine.training import TrainResult

DEFAULT_TIME_LIMIT = 300.0  # seconds: a few minutes on a laptop CPU
SELECT_METRIC = "mean.score"  # mean of macro-F1 and AUROC per head (R² for regression)
MIN_NETWORK_SECONDS = 20.0
ENSEMBLE_ROUNDS = 25
BAGS = 20  # bootstrap resamples of the selection rows for ensemble selection
LEAD_RESAMPLES = 50  # group resamples that size one model's lead over another
# The network early-stops on part of the validation groups and is weighed on the rest
# when each part has this many rows and the weighed part this many groups (`stopping_split`).
MIN_ROWS_PER_HALF = 100
MIN_GROUPS_TO_WEIGH = 3
CROSS_FIT_FOLDS = 4  # the validation split and three folds of the training rows
# Cross-fitting pays where one validation split is too small to trust. On larger sets it
# costs a fold's worth of fitting per baseline, and when one group holds most rows (one
# MediaEval event has 74% of the posts) that group's fold dominates the pooled score:
# measured there, every baseline scored about 0.5 AUROC on the held-out dominant event,
# so selection followed noise and shipped the worst modality for new events.
CROSS_FIT_MAX_ROWS = 2_000
ZERO_SHOT_ALL_ROWS_BELOW = 3000  # the cold start scores every row when that is cheap
LEXICAL_BUCKETS = 1 << 16
_DEEP_RESNETS = ("resnet18", "resnet26", "resnet34", "resnet50")
SHALLOW_RESNET = "resnet10t"
SHALLOW_BELOW_IMAGES = 5000
# Fine-tune the text encoder's top layers only with this many texts (fewer: it memorises)
# and when this many epochs fit the time left at the rough rate below.
FINE_TUNE_MIN_TEXTS = 1000
FINE_TUNE_TOP_LAYERS = 2
FINE_TUNE_MIN_EPOCHS = 4
FINE_TUNE_TEXTS_PER_SECOND = 25.0  # 2 CPU cores, all-MiniLM-L6-v2 at 128 tokens


@dataclass
class RecipeOptions:
    time_limit: float = DEFAULT_TIME_LIMIT
    seed: int = 0
    progress: bool = True
    device: str | None = None
    val_fraction: float | None = None  # None: 0.2, or 0.25 under 1,000 cases
    network: bool = True
    zero_shot: bool = True


@dataclass
class Candidate:
    """One model the run may ship, with its outputs on the rows it was scored on.

    `outputs` spans every row of the run's data (training and validation rows together);
    `covers` marks the rows whose outputs come from a model that did not see them: every
    row for a cross-fitted baseline, the validation rows for the network."""

    name: str
    member: Member  # what ships: fitted on all the data where cheap (linear), else on training rows
    outputs: dict[str, np.ndarray]
    covers: np.ndarray
    report: dict[str, Any]  # on the validation rows, the same for every candidate (the printed table)
    selection_report: dict[str, Any]  # on every covered row (what selection trusts)
    seconds: float
    notes: dict[str, Any] = field(default_factory=dict)
    fitted: Any = None  # the network candidate's FittedNetwork (saved into the bundle)

    @property
    def score(self) -> float:
        return monitored_value(self.report, SELECT_METRIC)

    @property
    def selection_score(self) -> float:
        return monitored_value(self.selection_report, SELECT_METRIC)


@dataclass
class Fold:
    train: np.ndarray
    test: np.ndarray


class RunRows:
    """The run's data as one view: training rows first, then the validation rows."""

    def __init__(self, schema: LabelSchema, fit: "CaseView", val: "CaseView"):
        self.schema = schema
        self.view = fit.join(val)
        self.val = np.arange(len(fit), len(fit) + len(val))
        self.val_view = val

    def __len__(self) -> int:
        return len(self.view)

    def covering(self, rows: np.ndarray) -> np.ndarray:
        covers = np.zeros(len(self), dtype=bool)
        covers[rows] = True
        return covers

    def spread(self, outputs: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs known on `rows` as arrays over every row (zeros elsewhere, never read)."""
        full = {}
        for name, values in outputs.items():
            values = np.asarray(values, dtype=np.float32)
            full[name] = np.zeros((len(self), *values.shape[1:]), dtype=np.float32)
            full[name][rows] = values
        return full

    def candidate(self, name: str, member: Member, outputs: dict[str, np.ndarray], covers: np.ndarray,
                  seconds: float, notes: dict[str, Any] | None = None) -> Candidate:
        covered = np.flatnonzero(covers)
        on_val = {k: v[self.val] for k, v in outputs.items()}
        return Candidate(name, member, outputs, covers, _report(self.schema, on_val, self.val_view),
                         _report(self.schema, {k: v[covered] for k, v in outputs.items()}, self.view.subset(covered)),
                         seconds, notes=notes or {})


class Clock:
    def __init__(self, limit: float):
        self.limit, self.started = limit, time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining(self) -> float:
        return self.limit - self.elapsed


# -- the data as the baselines see it -------------------------------------------------------------


class CaseView:
    """Raw texts, classical image features (computed once per distinct image) and targets."""

    def __init__(self, dataset: Dataset, schema: LabelSchema, text_fields: list[str], use_image: bool, feature_cache: dict):
        samples = dataset.samples
        self.samples = samples
        self.cases = [CaseInputs(None, {f: s.texts.get(f) for f in text_fields},
                                 _cached_features(s, feature_cache) if use_image else None) for s in samples]
        no_scaling = {t.name: (0.0, 1.0) for t in schema.tasks if t.kind == "regression"}
        targets = encode_targets(samples, schema, no_scaling, "ignore")
        self.targets = {k: v.numpy() for k, v in targets.values.items()}
        self.masks = {k: v.numpy() for k, v in targets.masks.items()}
        self.unique_images = len({_image_key(s) for s in samples if s.image is not None})
        self.images = sum(s.image is not None for s in samples)

    def __len__(self) -> int:
        return len(self.samples)

    def texts(self, name: str) -> list[str]:
        return [c.texts.get(name) or "" for c in self.cases]

    def subset(self, rows: np.ndarray) -> "CaseView":
        part = object.__new__(CaseView)
        part.samples, part.cases = [self.samples[i] for i in rows], [self.cases[i] for i in rows]
        part.targets = {k: v[rows] for k, v in self.targets.items()}
        part.masks = {k: v[rows] for k, v in self.masks.items()}
        part.unique_images, part.images = self.unique_images, self.images
        return part

    def join(self, other: "CaseView") -> "CaseView":
        joined = object.__new__(CaseView)
        joined.samples, joined.cases = self.samples + other.samples, self.cases + other.cases
        joined.targets = {k: np.concatenate([v, other.targets[k]]) for k, v in self.targets.items()}
        joined.masks = {k: np.concatenate([v, other.masks[k]]) for k, v in self.masks.items()}
        joined.unique_images, joined.images = self.unique_images, self.images + other.images
        return joined


def _image_key(sample) -> Any:
    ref = sample.meta.get("image_ref")
    return (sample.meta.get("source"), ref) if ref else id(sample.image)


def _cached_features(sample, cache: dict) -> np.ndarray | None:
    if sample.image is None:
        return None
    key = _image_key(sample)
    if key not in cache:
        cache[key] = image_features(sample.image)
    return cache[key]


# -- splitting -----------------------------------------------------------------------------------


def validation_split(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Grouped (Sample.meta["group"]) when groups are given, else stratified on the first
    multiclass task, else random."""
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    samples = dataset.samples
    rows = np.arange(len(samples))
    strata = _strata(dataset.label_schema, samples)
    groups = [s.meta.get("group") for s in samples]
    if any(g is not None for g in groups):
        groups = [g if g is not None else f"row-{i}" for i, g in enumerate(groups)]
        val_rows = grouped_validation_rows(groups, strata, fraction, seed)
        fit_rows = np.setdiff1d(rows, val_rows)
    elif strata is not None and min(np.bincount(np.unique(strata, return_inverse=True)[1])) >= 2:
        fit_rows, val_rows = next(StratifiedShuffleSplit(1, test_size=fraction, random_state=seed).split(rows, strata))
    else:
        fit_rows, val_rows = next(ShuffleSplit(1, test_size=fraction, random_state=seed).split(rows))
    pick = lambda chosen: Dataset([samples[i] for i in sorted(chosen)], dataset.label_schema)  # noqa: E731
    return pick(fit_rows), pick(val_rows)


def grouped_validation_rows(groups: list[str], strata: list[str] | None, fraction: float, seed: int, tries: int = 50) -> np.ndarray:
    """Rows of whole groups making up about `fraction` of the data, label mix close to the
    whole. A group larger than the validation share stays in training: one event with
    three quarters of the posts must not become the whole validation set while training
    keeps the scraps."""
    names, index = np.unique(np.array(groups, dtype=object), return_inverse=True)
    sizes = np.bincount(index)
    target = fraction * len(groups)
    overall = _label_mix(strata, np.arange(len(groups)))
    rng = np.random.default_rng(seed)
    best, best_cost = None, float("inf")
    for _ in range(tries):
        chosen, total = [], 0
        for g in rng.permutation(len(names)):
            if total + sizes[g] <= target * 1.1:
                chosen.append(g)
                total += sizes[g]
            if total >= target * 0.9:
                break
        if not chosen or len(chosen) == len(names):
            continue
        rows = np.flatnonzero(np.isin(index, chosen))
        cost = abs(total - target) / target + _mix_distance(overall, _label_mix(strata, rows))
        if cost < best_cost:
            best, best_cost = rows, cost
    if best is None:  # a single group, or groups too large to split off: no grouping possible
        best = np.sort(rng.permutation(len(groups))[: max(1, int(round(target)))])
    return best


def _label_mix(strata: list[str] | None, rows: np.ndarray) -> dict[str, float]:
    if strata is None or len(rows) == 0:
        return {}
    values, counts = np.unique(np.array(strata, dtype=object)[rows], return_counts=True)
    return dict(zip(values, counts / counts.sum()))


def _mix_distance(a: dict[str, float], b: dict[str, float]) -> float:
    return sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def _strata(schema: LabelSchema, samples: list) -> list[str] | None:
    """The first multiclass task's labels: what splits keep in proportion."""
    for task in schema.tasks:
        if task.kind == "multiclass":
            return [str(s.labels.get(task.name)) for s in samples]
    return None


def cross_fit_folds(rows: RunRows, seed: int, folds: int = CROSS_FIT_FOLDS) -> list[Fold]:
    """The validation split as the first fold, the training rows cut into `folds - 1` more:
    whole groups per fold where the data names groups, stratified otherwise. Each fold's
    model trains on every row outside it."""
    from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

    everything = np.arange(len(rows))
    fit_rows = np.setdiff1d(everything, rows.val)
    first = [Fold(fit_rows, rows.val)]
    if folds <= 1 or len(rows) > CROSS_FIT_MAX_ROWS:
        return first
    samples = [rows.view.samples[i] for i in fit_rows]
    strata = _strata(rows.schema, samples)
    groups = [s.meta.get("group") for s in samples]
    parts = folds - 1
    if any(g is not None for g in groups):
        groups = [g if g is not None else f"row-{i}" for i, g in enumerate(groups)]
        parts = min(parts, len(set(groups)))
        if parts < 2:
            return first
        labels = strata if strata is not None else np.zeros(len(samples))
        splits = StratifiedGroupKFold(parts, shuffle=True, random_state=seed).split(fit_rows, labels, groups)
    elif strata is not None and np.bincount(np.unique(strata, return_inverse=True)[1]).min() >= parts:
        splits = StratifiedKFold(parts, shuffle=True, random_state=seed).split(fit_rows, strata)
    elif len(fit_rows) >= parts:
        splits = KFold(parts, shuffle=True, random_state=seed).split(fit_rows)
    else:
        return first
    return first + [Fold(np.setdiff1d(everything, fit_rows[test]), fit_rows[test]) for _, test in splits]


# -- candidates ------------------------------------------------------------------------------------


def _report(schema: LabelSchema, outputs: dict[str, np.ndarray], view: CaseView) -> dict[str, Any]:
    return full_report(schema, outputs, view.targets, view.masks)


def _temperatures(schema: LabelSchema, logits: dict[str, np.ndarray], view: CaseView) -> dict[str, float]:
    return {t.name: fit_temperature(t, torch.from_numpy(np.asarray(logits[t.name], dtype=np.float32)),
                                    torch.from_numpy(view.targets[t.name]), torch.from_numpy(view.masks[t.name]))
            for t in schema.tasks}


def fit_linear(name: str, fields: list[str], use_image: bool, rows: RunRows, folds: list[Fold],
               analysers: tuple[str, ...] = ("words", "chars")) -> Candidate:
    """A linear model per head, cross-fitted over `folds`: the regularisation strength and
    the temperatures are chosen on the pooled out-of-fold predictions, then the model that
    ships is fitted once more on every row."""
    started = time.monotonic()
    schema, view = rows.schema, rows.view
    balanced = {t.name: is_imbalanced(t, view.targets[t.name], view.masks[t.name]) for t in schema.tasks}
    heldout: dict[float, dict[str, np.ndarray]] = {C: {} for C in C_GRID}
    for fold in folds:
        train = view.subset(fold.train)
        member, features = _featurise(name, schema, fields, use_image, train, analysers)
        test_features = member.features(view.subset(fold.test).cases)
        for C in C_GRID:
            member.heads = _fit_heads(schema, features, train, C, balanced)
            for task, scores in member.heads.scores(test_features).items():
                heldout[C].setdefault(task, np.zeros((len(view), *scores.shape[1:]), dtype=np.float32))[fold.test] = scores
    covers = rows.covering(np.concatenate([f.test for f in folds]))
    covered = view.subset(np.flatnonzero(covers))
    best: tuple[float, float, dict[str, float], dict[str, np.ndarray]] | None = None
    for C in C_GRID:
        scores = {task: values[covers] for task, values in heldout[C].items()}
        temperatures = _temperatures(schema, scores, covered)
        outputs = {t.name: calibrate(t, scores[t.name], temperatures[t.name]) for t in schema.tasks}
        score = monitored_value(_report(schema, outputs, covered), SELECT_METRIC)
        if best is None or score > best[0]:
            best = (score, C, temperatures, outputs)
    assert best is not None
    _, chosen_C, temperatures, outputs = best
    member, features = _featurise(name, schema, fields, use_image, view, analysers)
    member.heads, member.temperatures = _fit_heads(schema, features, view, chosen_C, balanced), temperatures
    notes = {"C": chosen_C, "folds": len(folds)}
    return rows.candidate(name, member, rows.spread(outputs, np.flatnonzero(covers)), covers, time.monotonic() - started, notes)


def _featurise(name: str, schema: LabelSchema, fields: list[str], use_image: bool, view: CaseView,
               analysers: tuple[str, ...]) -> tuple[LinearMember, Any]:
    """A linear member whose vectorisers are fitted on `view` (no heads yet), and its features."""
    texts = {f: TfidfText(analysers=analysers).fit([t for t in view.texts(f) if t]) for f in fields}
    image = None
    if use_image:
        present = np.array([c.image_features is not None for c in view.cases])
        raw = np.stack([c.image_features if c.image_features is not None else np.zeros(_feature_width(view)) for c in view.cases])
        image = Standardiser.fit(raw, present)
    member = LinearMember(name, schema, texts, image, LinearHeads())
    return member, member.features(view.cases)


def _fit_heads(schema: LabelSchema, features: Any, view: CaseView, C: float, balanced: dict[str, bool]) -> LinearHeads:
    return LinearHeads({t.name: fit_head(t, features, view.targets[t.name], view.masks[t.name], C=C, balanced=balanced[t.name])
                        for t in schema.tasks})


def _feature_width(view: CaseView) -> int:
    return next(c.image_features.shape[0] for c in view.cases if c.image_features is not None)


def linear_plan(text_fields: list[str], has_image: bool) -> list[tuple[str, list[str], bool, tuple[str, ...]]]:
    """(name, text fields, image?, TF-IDF analysers) of each linear baseline. Words and
    chars are separate members too: which one carries a domain's signal varies (names
    and phrases vs. spellings and codes), and the ensemble can weigh them."""
    both = ("words", "chars")
    plan = []
    for f in text_fields:
        plan += [(f"tfidf-{f}", [f], False, both), (f"tfidf-words-{f}", [f], False, ("words",)),
                 (f"tfidf-chars-{f}", [f], False, ("chars",))]
    if has_image:
        plan.append(("image-features", [], True, both))
    if len(text_fields) + int(has_image) > 1:
        plan.append(("linear-all", list(text_fields), has_image, both))
    return plan


def zero_shot_candidate(rows: RunRows, text_fields: list[str], device: str | None) -> Candidate | None:
    """The cold start as a candidate, where every label has a description to compare with.
    It learns nothing from the rows, so every row is held out for it; scoring them all
    costs a sentence encoding each, so large sets score the validation rows only."""
    schema = rows.schema
    if not text_fields or any(t.kind == "regression" for t in schema.tasks):
        return None
    if any(not label.description.strip() for t in schema.tasks for label in t.labels):
        return None
    started = time.monotonic()
    member = ZeroShotMember("zero-shot", schema, text_fields, device=device)
    scored = np.arange(len(rows)) if len(rows) < ZERO_SHOT_ALL_ROWS_BELOW else rows.val
    outputs = rows.spread(member.outputs([rows.view.cases[i] for i in scored]), scored)
    return rows.candidate("zero-shot", member, outputs, rows.covering(scored), time.monotonic() - started)


# -- the network -------------------------------------------------------------------------------------


def network_plan(spec: ModelSpec, config: TrainConfig, fit: CaseView, modalities: list[str], budget: float,
                 schema: LabelSchema, seed: int, progress: bool) -> tuple[ModelSpec, TrainConfig, dict[str, Any]]:
    """The plugin's network, adjusted to this data and the time left. Returns the reasons."""
    why: dict[str, Any] = {}
    used = list(modalities)
    image = spec.image_encoder
    updates: dict[str, Any] = {}
    if "image" in used and not image.pretrained:
        if fit.images and fit.unique_images < 0.5 * fit.images:
            used.remove("image")
            why["image"] = f"{fit.unique_images} distinct images in {fit.images} rows: left to the classical features"
        else:
            size = _native_side(fit)
            updates["image_size"] = min(image.image_size, size)
            why["image"] = f"from scratch at {updates['image_size']} px (images are about {size} px)"
            if image.name in _DEEP_RESNETS and fit.unique_images < SHALLOW_BELOW_IMAGES:
                # A few thousand photos cannot fill a deep network learning from scratch;
                # a shallow one learns as much and runs more epochs in the same time.
                updates["name"] = SHALLOW_RESNET
                why["image"] += f", {SHALLOW_RESNET} instead of {image.name} ({fit.unique_images} distinct images)"
    if "image" in used:
        spec = spec.model_copy(update={"image_encoder": image.model_copy(update=updates)})
    text = spec.text_encoder
    if any(m != "image" for m in used) and not text.freeze:
        texts = sum(1 for c in fit.cases for m in used if m != "image" and c.has(m))
        if text.pretrained and texts >= FINE_TUNE_MIN_TEXTS and _fine_tune_fits(texts, budget):
            spec = spec.model_copy(update={"text_encoder": text.model_copy(update={"train_top_layers": FINE_TUNE_TOP_LAYERS})})
            why["text"] = f"top {FINE_TUNE_TOP_LAYERS} layers of the pretrained encoder fine-tuned ({texts} texts, time allows)"
        else:
            # Too little data to move a pretrained encoder, or too little time on this
            # machine: frozen features are encoded once and cached instead.
            spec = spec.model_copy(update={"text_encoder": text.model_copy(update={"freeze": True})})
            why["text"] = "pretrained encoder frozen (features cached once)"
    if not used:
        return spec, config, {"skipped": "no modality left for a network"}
    spec = spec.model_copy(update={"modalities": used})
    if any(m != "image" for m in used) and not spec.lexical_buckets:
        spec = spec.model_copy(update={"lexical_buckets": LEXICAL_BUCKETS})
        why["lexical"] = f"hashed n-grams ({LEXICAL_BUCKETS} buckets) next to the sentence encoder"
    imbalanced = any(is_imbalanced(t, fit.targets[t.name], fit.masks[t.name]) for t in schema.tasks if t.kind == "multiclass")
    train_updates: dict[str, Any] = {
        # config.epochs stays the most the network may run; the time left usually decides.
        "time_limit_seconds": budget, "seed": seed, "progress": progress, "progress_label": "network",
        "class_weights": config.class_weights or imbalanced,
        "monitor": SELECT_METRIC,
    }
    if len(used) > 1:  # cases arrive with an input missing: train for it
        train_updates["modality_dropout"] = max(config.modality_dropout, 0.2)
    if "image" in used and not spec.image_encoder.pretrained:
        train_updates["augment"] = config.augment.model_copy(update={"enabled": True})
        if len(used) > 1:
            train_updates["unimodal_loss_weight"] = max(config.unimodal_loss_weight, 1.0)
    why["class_weights"] = train_updates["class_weights"]
    return spec, config.model_copy(update=train_updates), why


def _fine_tune_fits(texts: int, budget: float) -> bool:
    """Can a few epochs of fine-tuning run in the budget on this machine? (A rough rate:
    forward + backward of a small sentence encoder per text, CPU or GPU.)"""
    rate = FINE_TUNE_TEXTS_PER_SECOND * (20 if torch.cuda.is_available() else 1)
    return FINE_TUNE_MIN_EPOCHS * texts / rate <= 0.8 * budget


def _native_side(view: CaseView) -> int:
    """Median short side of the images, rounded to a multiple of 32, within 64..224."""
    sides = [min(s.image.size) for s in view.samples[:500] if s.image is not None]
    side = int(np.median(sides)) if sides else 224
    return int(min(224, max(64, round(side / 32) * 32)))


def network_candidate(plugin: Plugin, fit: Dataset, val: Dataset, rows: RunRows, spec: ModelSpec, config: TrainConfig,
                      device: str | None) -> Candidate:
    """The fused network, trained once on the training rows and held out on validation.

    Where the validation rows are enough groups, the network early-stops on half of them
    and selection weighs it only on the other half (`stopping_split`)."""
    from twinlens.engine.training import fit_network

    started = time.monotonic()
    stop, judge = stopping_split(val, config.seed)
    fitted = fit_network(fit, val if judge is None else _rows_of(val, stop), spec, config, device)
    member = NetworkMember("network", fitted.predictor(plugin))
    outputs_on_val = _val_outputs(fitted, val, stop, judge)
    views = {}
    if len(spec.modalities) > 1:
        for modality in spec.modalities:
            views[modality] = _report(rows.schema, outputs_on_val([modality]), rows.val_view)
    notes = {"epochs": len(fitted.history), "modalities": spec.modalities, "alone": views,
             "train_rows": fitted.train_size, "train_rows_offered": len(fit.samples)}
    if judge is not None:
        notes.update(stopped_on_rows=len(stop), weighed_on_rows=len(judge))
    covers = rows.covering(rows.val if judge is None else rows.val[judge])
    candidate = rows.candidate("network", member, rows.spread(outputs_on_val(None), rows.val), covers,
                               time.monotonic() - started, notes)
    candidate.fitted = fitted
    return candidate


def stopping_split(val: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Validation rows the network early-stops on, and the rows selection weighs it on
    (None: all of them, on both).

    A network's best epoch is the one that scores best on the rows it stops on, so its
    score there is optimistic, while a cross-fitted baseline's is not; on grouped data the
    validation rows are a few events or patients, and that optimism is what tips selection
    towards the network. So with enough groups the validation rows are split, by whole
    groups, into two halves of about equal rows: the network stops on the half with fewer
    groups (picking an epoch needs rows, not variety) and is weighed on the one with more
    (how it does on groups it never saw is what selection has to judge)."""
    groups = [sample.meta.get("group") for sample in val.samples]
    every = np.arange(len(groups))
    if all(g is None for g in groups) or len(groups) < 2 * MIN_ROWS_PER_HALF:
        return every, None
    groups = [g if g is not None else f"row-{i}" for i, g in enumerate(groups)]
    half = grouped_validation_rows(groups, _strata(val.label_schema, val.samples), 0.5, seed)
    halves = sorted((np.setdiff1d(every, half), half), key=lambda rows: len({groups[i] for i in rows}))
    stop, judge = halves
    if min(len(stop), len(judge)) < MIN_ROWS_PER_HALF or len({groups[i] for i in judge}) < MIN_GROUPS_TO_WEIGH:
        return every, None
    return stop, judge


def _rows_of(dataset: Dataset, rows: np.ndarray) -> Dataset:
    return Dataset([dataset.samples[i] for i in rows], dataset.label_schema)


def _val_outputs(fitted: Any, val: Dataset, stop: np.ndarray, judge: np.ndarray | None):
    """A function of the modalities to see: the network's outputs on every validation row,
    in the validation set's order (the rows it stopped on and the rows held back from it
    each put back in their places)."""
    held = fitted.encode([val.samples[i] for i in judge]) if judge is not None else None

    def outputs(modalities: list[str] | None) -> dict[str, np.ndarray]:
        on_stop = fitted.val_outputs(modalities)
        if held is None:
            return on_stop
        on_judge = fitted.outputs_on(*held, modalities)
        joined = {}
        for name, values in on_stop.items():
            joined[name] = np.zeros((len(val.samples), *values.shape[1:]), dtype=values.dtype)
            joined[name][stop], joined[name][judge] = values, on_judge[name]
        return joined

    return outputs


# -- selection ---------------------------------------------------------------------------------------


def _loss(schema: LabelSchema, outputs: dict[str, np.ndarray], view: CaseView) -> float:
    total = []
    for task in schema.tasks:
        p, y, m = outputs[task.name], view.targets[task.name], view.masks[task.name].astype(bool)
        if not m.any():
            continue
        if task.kind == "multiclass":
            total.append(float(-np.log(np.clip(p[m, y[m].astype(int)], 1e-7, 1)).mean()))
        elif task.kind == "multilabel":
            q = np.clip(p, 1e-7, 1 - 1e-7)
            total.append(float((-(y * np.log(q) + (1 - y) * np.log(1 - q)))[m].mean()))
        else:
            total.append(float(((p.reshape(-1) - y)[m] ** 2).mean() / max(y[m].var(), 1e-9)))
    return float(np.mean(total)) if total else 0.0


def greedy_weights(schema: LabelSchema, candidates: list[Candidate], view: CaseView, where: "SelectionRows",
                   rows: np.ndarray) -> np.ndarray:
    """Ensemble selection with repetition on `rows`: start from the best single member among
    `starters` (those with an output on every row), add the member that lowers the loss
    most, stop when none does. A member counts only on the rows it `sees`."""
    part = view.subset(rows)
    sees, answers = where.sees[rows], where.covers[rows]
    outputs = [{k: v[rows] for k, v in c.outputs.items()} for c in candidates]
    counts = np.zeros(len(candidates))
    one = np.eye(len(candidates))

    def loss_with(trial: np.ndarray) -> float:
        return _loss(schema, mix(schema, outputs, trial / trial.sum(), sees, answers), part)

    singles = {k: loss_with(one[k]) for k in where.starters}
    first = min(singles, key=singles.get)
    counts[first], current = 1, singles[first]
    for _ in range(ENSEMBLE_ROUNDS):
        trials = [loss_with(counts + one[k]) for k in range(len(candidates))]
        best = int(np.argmin(trials))
        if trials[best] >= current - 1e-5:
            break
        counts[best] += 1
        current = trials[best]
    return counts / counts.sum()


@dataclass
class SelectionRows:
    """Where members are weighed: the rows some candidate covers, which member counts on
    which row (it covers the row and sees one of its modalities there), and the members
    that cover all those rows (an ensemble starts from one, so no row goes unanswered)."""

    rows: np.ndarray
    sees: np.ndarray  # (all rows, candidates)
    covers: np.ndarray  # (all rows, candidates)
    starters: list[int]

    @classmethod
    def of(cls, candidates: list[Candidate], view: CaseView) -> "SelectionRows":
        covers = np.stack([c.covers for c in candidates], axis=1)
        union = covers.any(1)
        starters = [k for k in range(len(candidates)) if covers[union, k].all()]
        if not starters:  # nobody covers every row: weigh on the rows everyone covers
            union, starters = covers.all(1), list(range(len(candidates)))
        sees = present_matrix([c.member for c in candidates], view.cases) & covers
        return cls(np.flatnonzero(union), sees, covers, starters)


def group_rows(view: CaseView, rows: np.ndarray) -> list[np.ndarray]:
    """`rows` split by the case's group (event, patient); a row without one is its own."""
    groups = np.array([str(g) if (g := view.samples[i].meta.get("group")) is not None else f"row-{i}" for i in rows], dtype=object)
    units = np.unique(groups, return_inverse=True)[1]
    return [rows[units == u] for u in range(units.max() + 1)]


def bagged_weights(schema: LabelSchema, candidates: list[Candidate], view: CaseView, where: SelectionRows, seed: int,
                   bags: int = BAGS) -> np.ndarray:
    """Greedy selection on bootstrap resamples of the selection rows, weights averaged.

    One sample of cases is small and, on real data, unlike the next batch of cases in ways
    it cannot show; selecting on it once overfits its quirks. Resampling whole groups
    (events, patients) where the data has them asks which members help across the
    groups, not on the ones that happen to be there."""
    rng = np.random.default_rng(seed)
    members = group_rows(view, where.rows)
    total = np.zeros(len(candidates))
    for _ in range(bags):
        picked = rng.integers(0, len(members), len(members))
        total += greedy_weights(schema, candidates, view, where, np.concatenate([members[i] for i in picked]))
    return total / total.sum()


# -- the run -----------------------------------------------------------------------------------------


def train_auto(plugin: Plugin, dataset: Dataset, *, out_dir: Path, val: Dataset | None = None, spec: ModelSpec | None = None,
               config: TrainConfig | None = None, options: RecipeOptions | None = None) -> TrainResult:
    from twinlens.engine.bundle import refuse_foreign_folder
    from twinlens.engine.training import TrainResult, seed_everything

    options = options or RecipeOptions()
    spec = spec or plugin.default_model_spec()
    config = config or plugin.training_defaults()
    refuse_foreign_folder(Path(out_dir))
    clock = Clock(options.time_limit)
    seed_everything(options.seed)
    fraction = options.val_fraction or (0.25 if len(dataset.samples) < 1000 else 0.2)
    fit_set, val_set = (dataset, val) if val is not None else validation_split(dataset, fraction, options.seed)
    schema = fit_set.label_schema
    modalities = _modalities_with_data(spec, fit_set)
    text_fields = [m for m in modalities if m != "image"]
    cache: dict = {}
    fit_view = CaseView(fit_set, schema, text_fields, "image" in modalities, cache)
    rows = RunRows(schema, fit_view, CaseView(val_set, schema, text_fields, "image" in modalities, cache))
    folds = cross_fit_folds(rows, options.seed)

    candidates: list[Candidate] = []
    plan = linear_plan(text_fields, "image" in modalities)
    bar = tqdm(total=len(plan) + 2, desc="candidates", disable=not options.progress)

    def record(candidate: Candidate | None) -> None:
        bar.update(1)
        if candidate is not None:
            candidates.append(candidate)
            best = max(candidates, key=lambda c: c.score)
            bar.set_postfix_str(f"{candidate.name} {candidate.score:.3f} | best {best.name} {best.score:.3f}")

    for name, fields, use_image, analysers in plan:
        bar.set_description(f"candidate {name}")
        record(fit_linear(name, fields, use_image, rows, folds, analysers))
    bar.set_description("candidate zero-shot")
    record(zero_shot_candidate(rows, text_fields, options.device) if options.zero_shot else None)
    network_notes: dict[str, Any] = {}
    budget = clock.remaining * 0.85
    if options.network and budget >= MIN_NETWORK_SECONDS:
        net_spec, net_config, network_notes = network_plan(spec, config, fit_view, modalities, budget, schema, options.seed, options.progress)
        if "skipped" not in network_notes:
            bar.set_description("candidate network")
            record(network_candidate(plugin, fit_set, val_set, rows, net_spec, net_config, options.device))
    else:
        network_notes = {"skipped": "no time left for a network" if options.network else "networks turned off"}
    bar.close()

    shipped = _select(rows, candidates, options.seed)
    # Every candidate is kept (weight 0 when it does not ship), so `twinlens evaluate`
    # can show the baselines on new data next to what ships; serving skips weight 0.
    final_members = [c.member for c in candidates]
    final_weights = [shipped.weights[shipped.members.index(c)] if c in shipped.members else 0.0 for c in candidates]
    network = next((c for c in candidates if c.member.kind == "network"), None)
    what_fusion_adds = _fusion_gain(candidates, shipped, modalities)
    extra = {
        "plugin": plugin.name, "plugin_version": plugin.version,
        "label_schema": schema.model_dump(mode="json"),
        "modalities": modalities,
        "ensemble_temperatures": shipped.temperatures,
        "regression_stats": {},
        "recipe": {"preset": "auto", "time_limit_seconds": options.time_limit, "seed": options.seed,
                   "select_metric": SELECT_METRIC, "network": network_notes, "seconds": round(clock.elapsed, 1)},
        "shipped": shipped.name,
        "shipped_reason": shipped.reason,
        "metrics": {"validation": shipped.report, "selection": shipped.selection_report,
                    "candidates": {c.name: _summary(c) for c in candidates}, "what_fusion_adds": what_fusion_adds},
        "data": {"train": len(fit_set.samples), "validation": len(val_set.samples), "cross_fit_folds": len(folds),
                 "grouped": any(s.meta.get("group") is not None for s in dataset.samples)},
    }
    saver = (lambda folder: network.fitted.save(folder, plugin)) if network is not None else None
    bundle_config = save_ensemble(Path(out_dir), members=final_members, weights=final_weights, network_saver=saver, extra=extra)
    metrics = {**shipped.report, "version": bundle_config["version"], "shipped": shipped.name, "shipped_reason": shipped.reason,
               "candidates": extra["metrics"]["candidates"], "what_fusion_adds": what_fusion_adds,
               "seconds": round(clock.elapsed, 1)}
    return TrainResult(Path(out_dir), metrics, network.fitted.history if network is not None else [])


@dataclass
class Shipped:
    name: str
    members: list[Candidate]
    weights: list[float]
    temperatures: dict[str, float]
    report: dict[str, Any]  # on the validation rows, next to every candidate's
    selection_report: dict[str, Any]  # on the rows selection weighed it on
    reason: str


def _select(rows: RunRows, candidates: list[Candidate], seed: int) -> Shipped:
    """The ensemble, unless one candidate beats it by more than the noise across groups.

    The leader is the best single candidate, or the ensemble where it scores at least as
    well. On real data the validation rows are a few events or patients, and a lead of a
    few thousandths there is noise: a network that led the ensemble by 0.002 on
    validation trailed the word baseline by 0.035 on new events. So a single candidate
    ships alone only when its lead over the ensemble is more than one standard error of
    that lead across resampled groups; within it, the ensemble (which averages the tied
    candidates' errors) ships."""
    schema, view = rows.schema, rows.view
    singles = [Option(c.name, [c], [1.0], {}, c.outputs, c.covers, c.report, c.selection_report, c.selection_score)
               for c in candidates]
    best = max(singles, key=lambda o: o.selection_score)
    ensemble = _ensemble_option(rows, candidates, seed)
    if ensemble is None:
        return best.shipped(f"{best.name} alone: no mixture with the other candidates improves it ({int(best.covers.sum())} rows)")
    lead, noise, on = _paired(schema, view, best, ensemble, seed)
    parts = ", ".join(f"{c.name} {w:.2f}" for c, w in zip(ensemble.members, ensemble.weights))
    if lead <= 0:
        return ensemble.shipped(f"ensemble ({parts}) scores at least as well as the best single candidate, {best.name} "
                                f"(by {max(0.0, -lead):.3f} on {on} rows)")
    if lead <= noise:
        return ensemble.shipped(f"ensemble ({parts}): {best.name} leads it by {lead:.3f} on {on} rows, within the standard "
                                f"error {noise:.3f} across resampled groups, so the ensemble that hedges it ships")
    return best.shipped(f"{best.name} alone: it leads the ensemble ({parts}) by {lead:.3f} on {on} rows, more than the "
                        f"standard error {noise:.3f} across resampled groups")


@dataclass
class Option:
    """A model the run may ship: one candidate, or the ensemble of several."""

    name: str
    members: list[Candidate]
    weights: list[float]
    temperatures: dict[str, float]
    outputs: dict[str, np.ndarray]
    covers: np.ndarray
    report: dict[str, Any]
    selection_report: dict[str, Any]
    selection_score: float

    def shipped(self, reason: str) -> Shipped:
        return Shipped(self.name, self.members, self.weights, self.temperatures, self.report, self.selection_report, reason)


def _ensemble_option(rows: RunRows, candidates: list[Candidate], seed: int) -> Option | None:
    """The bagged greedy mixture of the candidates, tempered; None when it is one member."""
    schema, view = rows.schema, rows.view
    where = SelectionRows.of(candidates, view)
    weights = bagged_weights(schema, candidates, view, where, seed)
    weights = np.where(weights >= 0.02, weights, 0.0)  # drop members that barely count
    weights = weights / weights.sum()
    chosen = [i for i, w in enumerate(weights) if w > 0]
    if len(chosen) < 2:
        return None
    members = [candidates[i] for i in chosen]
    # The mixture is defined where a chosen member has an output (every row when a
    # cross-fitted baseline is among them, the validation rows when only the network is).
    answered = np.intersect1d(where.rows, np.flatnonzero(where.covers[:, chosen].any(1)))
    mixed = mix(schema, [{k: v[answered] for k, v in c.outputs.items()} for c in members], weights[chosen],
                where.sees[answered][:, chosen], where.covers[answered][:, chosen])
    weighed = view.subset(answered)
    temperatures = _temperatures(schema, {t.name: logits_of(t, mixed[t.name]) for t in schema.tasks}, weighed)
    outputs = rows.spread(temper_mixture(schema, mixed, temperatures), answered)
    selection_report = _report(schema, {k: v[answered] for k, v in outputs.items()}, weighed)
    return Option("ensemble", members, list(weights[chosen]), temperatures, outputs, rows.covering(answered),
                  _report(schema, {k: v[rows.val] for k, v in outputs.items()}, rows.val_view), selection_report,
                  monitored_value(selection_report, SELECT_METRIC))


def _paired(schema: LabelSchema, view: CaseView, ahead: Option, behind: Option, seed: int) -> tuple[float, float, int]:
    """`ahead`'s lead over `behind` on the rows both were scored on, its standard error
    across resampled groups, and how many rows that is."""
    on = np.flatnonzero(ahead.covers & behind.covers)
    if len(on) == 0:
        return float("inf"), 0.0, 0
    score = lambda option, picked: monitored_value(  # noqa: E731
        _report(schema, {k: v[picked] for k, v in option.outputs.items()}, view.subset(picked)), SELECT_METRIC)
    lead = score(ahead, on) - score(behind, on)
    return lead, lead_noise(schema, ahead.outputs, behind.outputs, view, on, seed), len(on)


def lead_noise(schema: LabelSchema, ahead: dict[str, np.ndarray], behind: dict[str, np.ndarray], view: CaseView,
               rows: np.ndarray, seed: int, resamples: int = LEAD_RESAMPLES) -> float:
    """Standard error of the lead of `ahead`'s outputs over `behind`'s on `rows`, resampling whole groups.

    Validation on real data is a few groups (events, patients, sites), and a lead of a
    few thousandths there says little about the next group: this is how far the lead
    moves when other groups of the same kind had been drawn. Rows without a group are
    their own group."""
    rng = np.random.default_rng(seed)
    members = group_rows(view, rows)
    leads = []
    for _ in range(resamples):
        picked = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        part = view.subset(picked)
        score = [monitored_value(_report(schema, {k: v[picked] for k, v in side.items()}, part), SELECT_METRIC)
                 for side in (ahead, behind)]
        if np.all(np.isfinite(score)):
            leads.append(score[0] - score[1])
    return float(np.std(leads, ddof=1)) if len(leads) > 1 else 0.0


def _fusion_gain(candidates: list[Candidate], shipped: Shipped, modalities: list[str]) -> dict[str, Any] | None:
    """The shipped model's score minus the best model that sees one modality only."""
    if len(modalities) < 2:
        return None
    singles = [c for c in candidates if len(c.member.modalities) == 1]
    alone = {m: max((c.score for c in singles if c.member.modalities == [m]), default=None) for m in modalities}
    shipped_score = monitored_value(shipped.report, SELECT_METRIC)
    known = [v for v in alone.values() if v is not None]
    return {"shipped": shipped_score, "best_single_modality": max(known) if known else None,
            "per_modality": alone, "gain": shipped_score - max(known) if known else None}


def _summary(candidate: Candidate) -> dict[str, Any]:
    return {"report": candidate.report, "score": candidate.score, "seconds": round(candidate.seconds, 1),
            "selection_score": candidate.selection_score, "selection_rows": int(candidate.covers.sum()),
            "modalities": candidate.member.modalities, "kind": candidate.member.kind,
            "notes": {k: v for k, v in candidate.notes.items()}}


def _modalities_with_data(spec: ModelSpec, dataset: Dataset) -> list[str]:
    return [m for m in spec.modalities if any(s.has(m) for s in dataset.samples)]


__all__ = ["RecipeOptions", "train_auto", "validation_split", "DEFAULT_TIME_LIMIT"]
