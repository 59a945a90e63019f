"""Why the model answered what it did: an image heatmap and word weights per head.

For each head the explanation targets the label the model predicted (multiclass: the
chosen label; multilabel: the highest-scoring label; regression: the value).

- Image: Grad-CAM on the image encoder's output tokens. For a CNN those tokens are the
  cells of its last feature map, so this is Grad-CAM as published (channel weights = the
  mean gradient over the map, heat = ReLU of the weighted sum of channels). For a
  ViT-style encoder the same formula runs on the patch tokens of the last block (prefix
  tokens such as [CLS] dropped), the gradient method the CAM literature uses for
  transformers. The heat is stored as a small uint8 grid (the encoder's own resolution);
  the overlay is drawn from it over the stored input image.
- Text: integrated gradients (captum's LayerIntegratedGradients on the text encoder's
  token embeddings, baseline: the same tokens replaced by padding) summed per token,
  plus, when the network has a lexical branch, gradient x input on its hashed n-gram
  weights; both are mapped back to the words the user wrote (whitespace-separated spans
  of the text the model read) and added. Weights are in logit units, scaled per field so
  that the largest magnitude is 1; positive words pushed towards the predicted label.

Which network is explained: a network bundle's own (also under the ONNX runtime, whose
bundle keeps the torch weights); an ensemble's network member. An ensemble without one
is explained by its linear TF-IDF member: each word's weight is the sum of coefficient x
tf-idf over the n-grams it is part of. A zero-shot answer has no trained network; the
explanation says so.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twinlens.contract.prediction import Prediction
from twinlens.contract.schema import LabelSchema, Task

WORD = re.compile(r"\S+")
# scikit-learn's default token pattern, which the lexical branch and TF-IDF members use.
SKLEARN_TOKEN = re.compile(r"(?u)\b\w\w+\b")
DEFAULT_IG_STEPS = 16


@dataclass
class Heatmap:
    """Where in the image the evidence for one head's label lies (255: the most)."""

    grid: np.ndarray  # uint8 (rows, cols) at the encoder's own resolution
    method: str

    def png(self) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.grid).save(buffer, format="PNG", optimize=True)  # 2-D uint8: grayscale
        return buffer.getvalue()


@dataclass
class WordWeight:
    text: str
    weight: float
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "weight": self.weight, "start": self.start, "end": self.end}


@dataclass
class HeadExplanation:
    head: str
    label: str | None
    heatmap: Heatmap | None = None
    words: dict[str, list[WordWeight]] = field(default_factory=dict)  # per text field
    # A case of several images: one heatmap per image, keyed by its name (its view, or
    # "image N"); `heatmap` is then the one of the image that mattered most.
    image_heatmaps: dict[str, Heatmap] = field(default_factory=dict)


@dataclass
class Explanation:
    explained_by: str  # "network" | "ensemble network member" | "linear member ..." | "none"
    heads: dict[str, HeadExplanation] = field(default_factory=dict)
    text_method: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON for storage (heatmap grids travel separately, as PNGs)."""
        heads = {}
        for name, head in self.heads.items():
            heatmap = None
            if head.heatmap is not None:
                rows, cols = head.heatmap.grid.shape
                heatmap = {"rows": int(rows), "cols": int(cols), "method": head.heatmap.method}
            heads[name] = {"label": head.label, "heatmap": heatmap,
                           "words": {f: [w.to_dict() for w in spans] for f, spans in head.words.items()}}
            if head.image_heatmaps:
                heads[name]["image_heatmaps"] = {
                    image: {"rows": int(h.grid.shape[0]), "cols": int(h.grid.shape[1]), "method": h.method}
                    for image, h in head.image_heatmaps.items()}
        return {"explained_by": self.explained_by, "text_method": self.text_method, "notes": list(self.notes), "heads": heads}

    def heatmap_pngs(self) -> dict[str, bytes]:
        """PNG per head, and per head and image (`head@image`) for a case of several images."""
        pngs = {name: head.heatmap.png() for name, head in self.heads.items() if head.heatmap is not None}
        for name, head in self.heads.items():
            pngs.update({image_heatmap_key(name, image): h.png() for image, h in head.image_heatmaps.items()})
        return pngs


def image_heatmap_key(head: str, image: str) -> str:
    """How one image's heatmap of a head is stored: `fault@image 2`, `findings@lateral`."""
    return f"{head}@{image}"


# -- entry point --------------------------------------------------------------------------------


class Explainer:
    """Explains one loaded predictor's answers. `bundle_path` lets it load the torch
    network of a bundle served by the ONNX runtime (the bundle keeps its weights)."""

    def __init__(self, predictor: Any, bundle_path: str | Path | None = None, *, ig_steps: int = DEFAULT_IG_STEPS):
        self.predictor = predictor
        self.bundle_path = Path(bundle_path) if bundle_path is not None else None
        self.ig_steps = ig_steps
        self._network: tuple[Any, Any] | None = None  # (FusionModel, Preprocessor)

    def explain(self, encoded: Any, prediction: Prediction) -> Explanation:
        """`encoded`: what the predictor's `preprocess` returned for this case."""
        if prediction.zero_shot:
            return Explanation("none", notes=["a zero-shot answer: no network was trained on labelled examples; the "
                                              "answer is the similarity of the texts to the label descriptions"])
        kind = _predictor_kind(self.predictor)
        if kind == "ensemble":
            return self._explain_ensemble(encoded, prediction)
        model, pre = self._network_of(self.predictor, self.bundle_path)
        explanation = explain_network(model, pre, encoded, prediction, ig_steps=self.ig_steps)
        if kind == "onnx":
            explanation.notes.append("served by the ONNX runtime; explained with the same bundle's torch network")
        return explanation

    def _explain_ensemble(self, case: Any, prediction: Prediction) -> Explanation:
        ensemble = self.predictor
        others = [f"{m.kind} member {m.name!r}" for m in ensemble.members if m.kind != "network"]
        if ensemble.network is not None and case.network is not None:
            root = self.bundle_path / "network" if self.bundle_path is not None else None
            model, pre = self._network_of(ensemble.network, root)
            explanation = explain_network(model, pre, case.network, prediction, ig_steps=self.ig_steps)
            explanation.explained_by = "ensemble network member"
            if others:
                explanation.notes.append("the ensemble also mixes in " + ", ".join(others) + "; only its network is explained")
            return explanation
        linear = next((m for m in ensemble.members if m.kind == "linear" and m.texts), None)
        if linear is None:
            return Explanation("none", notes=["this ensemble has no network and no linear text model that can be explained"])
        explanation = explain_linear(linear, case.texts, prediction)
        explanation.notes.append("this ensemble has no network member: no image heatmap; the words are weighted by its "
                                 f"linear TF-IDF member {linear.name!r} (coefficient x tf-idf)")
        if len(ensemble.members) > 1:
            explanation.notes.append("other members (" + ", ".join(o for o in others if linear.name not in o) + ") are not explained")
        return explanation

    def _network_of(self, predictor: Any, root: Path | None) -> tuple[Any, Any]:
        if hasattr(predictor, "model"):
            return predictor.model, predictor.pre
        if self._network is None:
            if root is None:
                raise ValueError("an ONNX predictor is explained with its bundle's torch weights: give the bundle path")
            from twinlens.engine.bundle import load_bundle
            from twinlens.engine.data import Preprocessor

            model, tokenizer, _ = load_bundle(root)
            self._network = (model, Preprocessor(model.spec, tokenizer))
        return self._network


def _predictor_kind(predictor: Any) -> str:
    if hasattr(predictor, "members"):
        return "ensemble"
    return "onnx" if getattr(predictor, "runtime", "torch") == "onnx" else "network"


def explained_label(task: Task, prediction: Prediction) -> tuple[int | None, str | None]:
    """(output index, label name) of what a head's explanation is about."""
    head = prediction.heads[task.name]
    if task.kind == "regression":
        return None, None
    if task.kind == "multiclass":
        label = head.label
    else:
        label = max(head.probabilities, key=head.probabilities.get)
    return task.label_names.index(label), label


# -- networks -------------------------------------------------------------------------------------


def explain_network(model: Any, pre: Any, encoded: Any, prediction: Prediction, *, ig_steps: int = DEFAULT_IG_STEPS) -> Explanation:
    from twinlens.engine.data import collate

    model.eval()
    device = next(model.parameters()).device
    batch = collate([encoded], pre, device)
    schema: LabelSchema = model.label_schema
    targets = {task.name: explained_label(task, prediction) for task in schema.tasks}
    explanation = Explanation("network", heads={name: HeadExplanation(name, label) for name, (_, label) in targets.items()})
    used = model.spec.modalities
    raw = _raw_encodings(model, batch, used)
    if "image" in raw and model.spec.max_images > 1:
        for name, per_image in slot_heatmaps(model, batch, raw, targets, encoded, prediction).items():
            explanation.heads[name].image_heatmaps = per_image
            if per_image:
                explanation.heads[name].heatmap = per_image[_most_telling(per_image, prediction)]
    elif "image" in raw:
        for name, heatmap in image_heatmaps(model, batch, raw, targets).items():
            explanation.heads[name].heatmap = heatmap
    texts = [m for m in used if m != "image" and m in raw]
    for field_name in texts:
        text = (getattr(encoded, "texts", None) or {}).get(field_name)
        if not text:
            continue
        for name, weights in text_word_weights(model, pre, batch, raw, field_name, text, targets, ig_steps).items():
            explanation.heads[name].words[field_name] = weights
    if texts:
        explanation.text_method = "integrated gradients" + (" + lexical gradient x input" if model.spec.lexical_buckets else "")
    return explanation


def _raw_encodings(model: Any, batch: dict[str, Any], used: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each present modality's encoder output (tokens, mask), computed once without grad."""
    raw = {}
    with torch.no_grad():
        for modality in used:
            if not bool(batch["present"][modality][0]):
                continue
            inputs = batch["inputs"][modality]
            if modality != "image":
                inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
            tokens, mask = model.encode_raw(modality, inputs)
            raw[modality] = (tokens.float(), mask)
    return raw


def _score(outputs: dict[str, torch.Tensor], head: str, index: int | None) -> torch.Tensor:
    """The logit (or value) of the explained label, one per row."""
    values = outputs[head]
    return values.reshape(values.shape[0]) if index is None else values[:, index]


def _with_cached(batch: dict[str, Any], cached: dict[str, tuple[torch.Tensor, torch.Tensor]], rows: int = 1) -> dict[str, Any]:
    """`batch` repeated to `rows` rows, with these encoder outputs instead of re-running encoders."""
    def repeat(value: torch.Tensor) -> torch.Tensor:
        return value if value.shape[0] == rows else value.expand(rows, *value.shape[1:])

    inputs = {m: {k: repeat(v) for k, v in parts.items()} for m, parts in batch["inputs"].items()}
    present = {m: repeat(p) for m, p in batch["present"].items()}
    return {"inputs": inputs, "present": present, "cached": {m: (repeat(t), repeat(k)) for m, (t, k) in cached.items()}}


# -- image --------------------------------------------------------------------------------------


def image_heatmaps(model: Any, batch: dict[str, Any], raw: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   targets: dict[str, tuple[int | None, str | None]]) -> dict[str, Heatmap]:
    tokens = raw["image"][0].detach().clone().requires_grad_(True)
    layout = token_grid(model.image_encoder.backbone, tokens.shape[1])
    if layout is None:
        return {}
    prefix, side, method = layout
    with torch.enable_grad():
        outputs = model(_with_cached(batch, {**raw, "image": (tokens, raw["image"][1])}))
        heatmaps = {}
        for name, (index, _) in targets.items():
            (grads,) = torch.autograd.grad(_score(outputs, name, index).sum(), tokens, retain_graph=True)
            cam = grad_cam(tokens[0, prefix:].detach(), grads[0, prefix:])
            heatmaps[name] = Heatmap(_to_uint8(cam.reshape(side, side)), method)
    return heatmaps


def slot_heatmaps(model: Any, batch: dict[str, Any], raw: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  targets: dict[str, tuple[int | None, str | None]], encoded: Any, prediction: Prediction
                  ) -> dict[str, dict[str, Heatmap]]:
    """A multi-image model: Grad-CAM of each filled image slot, from one backward pass per
    head over the whole case (each image's tokens are its own segment of the sequence)."""
    tokens = raw["image"][0].detach().clone().requires_grad_(True)
    length = tokens.shape[1] // model.spec.max_images
    layout = token_grid(model.image_encoder.backbone, length)
    if layout is None:
        return {}
    prefix, side, method = layout
    filled = [(slot, name) for slot, name in enumerate(encoded.slot_names) if name is not None]
    with torch.enable_grad():
        outputs = model(_with_cached(batch, {**raw, "image": (tokens, raw["image"][1])}))
        heatmaps: dict[str, dict[str, Heatmap]] = {}
        for head, (index, _) in targets.items():
            (grads,) = torch.autograd.grad(_score(outputs, head, index).sum(), tokens, retain_graph=True)
            heatmaps[head] = {}
            for slot, name in filled:
                segment = slice(slot * length + prefix, (slot + 1) * length)
                cam = grad_cam(tokens[0, segment].detach(), grads[0, segment])
                heatmaps[head][name] = Heatmap(_to_uint8(cam.reshape(side, side)), method)
    return heatmaps


def _most_telling(per_image: dict[str, Heatmap], prediction: Prediction) -> str:
    shares = prediction.image_contributions
    return max(per_image, key=lambda name: shares.get(name, 0.0)) if shares else next(iter(per_image))


def token_grid(backbone: Any, count: int) -> tuple[int, int, str] | None:
    """(prefix tokens, grid side, method) of an encoder's output tokens; None when they do
    not form a square grid (images are resized to squares, so feature maps are square)."""
    prefix = int(getattr(backbone, "num_prefix_tokens", 0) or 0)
    side = math.isqrt(max(count - prefix, 0))
    if side == 0 or side * side != count - prefix:
        return None
    vit_like = prefix > 0 or hasattr(backbone, "patch_embed")
    return prefix, side, "grad-cam on patch tokens" if vit_like else "grad-cam"


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """(cells, channels) activations and gradients -> (cells,) ReLU(sum_c w_c A_c)."""
    weights = gradients.mean(0)
    return torch.relu((activations * weights).sum(-1))


def _to_uint8(heat: torch.Tensor) -> np.ndarray:
    top = float(heat.max())
    scaled = heat / top if top > 0 else torch.zeros_like(heat)
    return (scaled.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


# -- text ---------------------------------------------------------------------------------------


def text_word_weights(model: Any, pre: Any, batch: dict[str, Any], raw: dict[str, tuple[torch.Tensor, torch.Tensor]],
                      field_name: str, text: str, targets: dict[str, tuple[int | None, str | None]],
                      steps: int) -> dict[str, list[WordWeight]]:
    words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]
    offsets = _token_offsets(pre, text, batch["inputs"][field_name]["input_ids"].shape[1])
    results = {}
    for name, (index, _) in targets.items():
        per_word = np.zeros(len(words))
        token_scores = integrated_gradients(model, pre, batch, raw, field_name, name, index, steps)
        if offsets is not None:
            per_word += _tokens_to_words(token_scores, offsets, words)
        if model.spec.lexical_buckets:
            per_word += _lexical_to_words(model, batch, raw, field_name, name, index, text, words)
        results[name] = _scaled(words, per_word)
    return results


def integrated_gradients(model: Any, pre: Any, batch: dict[str, Any], raw: dict[str, tuple[torch.Tensor, torch.Tensor]],
                         field_name: str, head: str, index: int | None, steps: int) -> np.ndarray:
    """Per-token attributions (logit units) of one text field, by captum's integrated gradients."""
    from captum.attr import LayerIntegratedGradients

    inputs = batch["inputs"][field_name]
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    others = {m: value for m, value in raw.items() if m != field_name}

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = model.encode_raw(field_name, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        expanded = _with_cached(batch, {**others, field_name: (tokens.float(), attention_mask.bool())}, rows=input_ids.shape[0])
        return _score(model(expanded), head, index)

    layer = model.text_encoder.model.get_input_embeddings()
    special = torch.tensor([int(i) in set(pre.tokenizer.all_special_ids) for i in ids[0].tolist()], device=ids.device)
    baseline = ids.clone()
    baseline[0, ~special] = _pad_id(pre)
    with torch.enable_grad():
        attributions = LayerIntegratedGradients(forward, layer).attribute(
            ids, baselines=baseline, additional_forward_args=(mask,), n_steps=steps, internal_batch_size=steps)
    scores = attributions.sum(-1)[0].detach().float().cpu().numpy()
    scores[special.cpu().numpy()] = 0.0  # [CLS]/[SEP] are not the user's words
    return scores


def _pad_id(pre: Any) -> int:
    return int(pre.tokenizer.pad_token_id or 0)


def _token_offsets(pre: Any, text: str, length: int) -> list[tuple[int, int]] | None:
    """Character span of each token of `text` as the preprocessor tokenised it; None when
    the tokenizer cannot tell (a slow tokenizer)."""
    try:
        encoded = pre.tokenizer(text, truncation=True, max_length=pre.spec.text_encoder.max_length, return_offsets_mapping=True)
    except (NotImplementedError, ValueError):
        return None
    offsets = [tuple(pair) for pair in encoded["offset_mapping"]]
    return offsets if len(offsets) == length else None


def _tokens_to_words(scores: np.ndarray, offsets: list[tuple[int, int]], words: list[tuple[str, int, int]]) -> np.ndarray:
    per_word = np.zeros(len(words))
    starts = [start for _, start, _ in words]
    for score, (start, end) in zip(scores, offsets):
        if end <= start:  # special tokens
            continue
        position = int(np.searchsorted(starts, start, side="right")) - 1
        if 0 <= position < len(words) and start < words[position][2]:
            per_word[position] += float(score)
    return per_word


def _lexical_to_words(model: Any, batch: dict[str, Any], raw: dict[str, tuple[torch.Tensor, torch.Tensor]],
                      field_name: str, head: str, index: int | None, text: str, words: list[tuple[str, int, int]]) -> np.ndarray:
    """Gradient x input on the hashed n-gram weights, each bucket's share given to the
    words whose n-grams fall in it."""
    inputs = batch["inputs"][field_name]
    weights = inputs["lexical_weights"].detach().clone().requires_grad_(True)
    changed = {**batch, "inputs": {**batch["inputs"], field_name: {**inputs, "lexical_weights": weights}}}
    with torch.enable_grad():
        outputs = model(_with_cached(changed, raw))
        (grads,) = torch.autograd.grad(_score(outputs, head, index).sum(), weights)
    per_bucket: dict[int, float] = {}
    for bucket, value in zip(inputs["lexical_ids"][0].tolist(), (grads * weights)[0].tolist()):
        per_bucket[bucket] = per_bucket.get(bucket, 0.0) + value
    buckets = model.spec.lexical_buckets

    def feature_of(kind: str, gram: str) -> tuple[int, float] | None:
        bucket = hashed_bucket(gram, buckets)  # both analysers hash into the same buckets
        return (bucket, per_bucket[bucket]) if bucket in per_bucket else None

    return ngram_weights_to_words(words, feature_of)


def hashed_bucket(gram: str, buckets: int) -> int:
    """The bucket scikit-learn's HashingVectorizer puts an n-gram in (alternate_sign=False)."""
    from sklearn.utils import murmurhash3_32

    return abs(int(murmurhash3_32(gram, seed=0))) % buckets


def ngram_occurrences(words: list[tuple[str, int, int]]) -> list[tuple[str, str, list[int]]]:
    """Every (analyser, n-gram, indices of the user's words it comes from) that
    scikit-learn's lowercase analysers make of the text: "words" 1-2 grams of its token
    pattern and "chars" char_wb 2-5 grams (each word padded with a space, as it does)."""
    occurrences: list[tuple[str, str, list[int]]] = []
    tokens: list[tuple[str, int]] = []
    for position, (word, _, _) in enumerate(words):
        lowered = word.lower()
        tokens += [(token, position) for token in SKLEARN_TOKEN.findall(lowered)]
        occurrences += [("chars", gram, [position]) for gram in _char_wb_grams(f" {lowered} ")]
    occurrences += [("words", token, [position]) for token, position in tokens]
    occurrences += [("words", f"{a} {b}", sorted({pa, pb})) for (a, pa), (b, pb) in zip(tokens, tokens[1:])]
    return occurrences


def _char_wb_grams(padded: str, low: int = 2, high: int = 5) -> list[str]:
    grams = []
    for n in range(low, high + 1):  # scikit-learn's _char_wb_ngrams, loop for loop
        offset = 0
        grams.append(padded[offset:offset + n])
        while offset + n < len(padded):
            offset += 1
            grams.append(padded[offset:offset + n])
        if offset == 0:  # the word is shorter than n: no longer grams either
            break
    return grams


def ngram_weights_to_words(words: list[tuple[str, int, int]], feature_of) -> np.ndarray:
    """Spread each feature's weight over the words of the n-grams that make it.

    `feature_of(analyser, gram)` gives (feature key, weight) or None when the n-gram is
    no feature. A feature made by several n-gram occurrences (a repeated word; n-grams
    hashed into one bucket) shares its weight evenly among them, and an occurrence
    spanning two words (a bigram) gives each half."""
    occurrences = ngram_occurrences(words)
    features = {(kind, gram): feature_of(kind, gram) for kind, gram, _ in occurrences}
    made_by: dict[Any, int] = {}
    for kind, gram, _ in occurrences:
        found = features[(kind, gram)]
        if found is not None:
            made_by[found[0]] = made_by.get(found[0], 0) + 1
    per_word = np.zeros(len(words))
    for kind, gram, positions in occurrences:
        found = features[(kind, gram)]
        if found is None:
            continue
        key, weight = found
        for position in positions:
            per_word[position] += float(weight) / made_by[key] / len(positions)
    return per_word


def _scaled(words: list[tuple[str, int, int]], per_word: np.ndarray) -> list[WordWeight]:
    top = float(np.abs(per_word).max()) if len(per_word) else 0.0
    scale = 1.0 / top if top > 0 else 0.0
    return [WordWeight(word, round(float(value) * scale, 4), start, end) for (word, start, end), value in zip(words, per_word)]


# -- linear members ---------------------------------------------------------------------------------


def explain_linear(member: Any, texts: dict[str, str | None], prediction: Prediction) -> Explanation:
    """Word weights of a linear TF-IDF model: coefficient x tf-idf of each n-gram, spread
    over the words it is made of. Multiclass coefficients are taken relative to the mean
    over labels (softmax ignores what all labels share)."""
    explanation = Explanation(f"linear member {member.name!r}", text_method="coefficient x tf-idf")
    for task in member.schema.tasks:
        index, label = explained_label(task, prediction)
        head = member.heads.heads.get(task.name)
        explanation.heads[task.name] = HeadExplanation(task.name, label)
        if head is None:
            continue
        coef = head.coef[index if index is not None else 0]
        if task.kind == "multiclass":
            coef = coef - head.coef.mean(0)
        offset = 0
        for field_name, vectorizer in member.texts.items():
            text = texts.get(field_name)
            if text:
                explanation.heads[task.name].words[field_name] = _linear_field(vectorizer, coef, offset, text)
            offset += vectorizer.size
    return explanation


def _linear_field(vectorizer: Any, coef: np.ndarray, offset: int, text: str) -> list[WordWeight]:
    words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]
    contributions: dict[tuple[str, str], float] = {}
    for analyser in vectorizer.vectorizers:
        kind = "chars" if analyser.analyzer == "char_wb" else "words"
        row = analyser.transform([text]).tocoo()
        names = analyser.get_feature_names_out()
        for column, value in zip(row.col, row.data):
            contributions[(kind, str(names[column]))] = float(value) * float(coef[offset + column])
        offset += len(analyser.vocabulary_)

    def feature_of(kind: str, gram: str) -> tuple[tuple[str, str], float] | None:
        key = (kind, gram)
        return (key, contributions[key]) if key in contributions else None

    per_word = ngram_weights_to_words(words, feature_of)
    return _scaled(words, per_word)
