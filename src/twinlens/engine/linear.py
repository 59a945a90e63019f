"""Linear models on TF-IDF n-grams and classical image features (scikit-learn to fit).

These are the baselines every training run keeps, and members an ensemble may ship. They
are fitted with scikit-learn but stored as plain data: coefficient, IDF and scaling arrays
go to safetensors, vocabularies and options to JSON, and prediction is numpy arithmetic
(plus scikit-learn's vectoriser rebuilt from that vocabulary). Nothing is pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from twinlens.contract.schema import LabelSchema, Task

# Word 1-2 grams catch phrases, names and codes; char 2-5 grams within word boundaries
# catch spelling variants, inflections and parts of codes ("E-47", "err47").
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
MAX_TERMS = 50_000  # per analyser, most frequent first
C_GRID = (0.1, 1.0, 10.0)  # inverse regularisation strengths tried on validation
CLIP = 6.0  # standardised image features are clipped to this many standard deviations


# -- text ----------------------------------------------------------------------------------


class TfidfText:
    """TF-IDF word and/or char n-grams of one text field, L2-normalised per analyser."""

    ANALYSERS = {"words": ("word", WORD_NGRAMS), "chars": ("char_wb", CHAR_NGRAMS)}

    def __init__(self, vectorizers: list[Any] | None = None, analysers: tuple[str, ...] = ("words", "chars")):
        self.vectorizers = vectorizers or []
        self.analysers = analysers

    @staticmethod
    def _new(analyzer: str, ngrams: tuple[int, int], vocabulary: list[str] | None = None, min_df: int = 1):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, lowercase=True, sublinear_tf=True,
                               min_df=min_df, max_features=None if vocabulary else MAX_TERMS,
                               vocabulary=vocabulary, dtype=np.float32)

    def fit(self, texts: list[str]) -> "TfidfText":
        # A term seen once cannot generalise; on tiny sets keep everything.
        min_df = 2 if len(texts) >= 50 else 1
        self.vectorizers = []
        for analyzer, ngrams in (self.ANALYSERS[name] for name in self.analysers):
            vectorizer = self._new(analyzer, ngrams, min_df=min_df)
            try:
                vectorizer.fit(texts)
            except ValueError:  # no term survives (empty texts): this analyser adds nothing
                continue
            self.vectorizers.append(vectorizer)
        return self

    @property
    def size(self) -> int:
        return sum(len(v.vocabulary_) for v in self.vectorizers)

    def transform(self, texts: list[str | None]) -> sparse.csr_matrix:
        cleaned = [t or "" for t in texts]
        if not self.vectorizers:
            return sparse.csr_matrix((len(cleaned), 0), dtype=np.float32)
        return sparse.hstack([v.transform(cleaned) for v in self.vectorizers], format="csr", dtype=np.float32)

    def state(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = [], {}
        for i, vectorizer in enumerate(self.vectorizers):
            terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
            meta.append({"analyzer": vectorizer.analyzer, "ngram_range": list(vectorizer.ngram_range), "terms": terms})
            arrays[f"{prefix}.idf{i}"] = vectorizer.idf_.astype(np.float32)
        return {"vectorizers": meta}, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str) -> "TfidfText":
        vectorizers = []
        for i, item in enumerate(meta["vectorizers"]):
            vectorizer = cls._new(item["analyzer"], tuple(item["ngram_range"]), vocabulary=item["terms"])
            vectorizer.idf_ = arrays[f"{prefix}.idf{i}"].astype(np.float64)
            vectorizers.append(vectorizer)
        return cls(vectorizers)


# -- images --------------------------------------------------------------------------------


@dataclass
class Standardiser:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, present: np.ndarray) -> "Standardiser":
        rows = features[present] if present.any() else features
        std = rows.std(0)
        # A feature (nearly) constant in training must not explode on a new image.
        floor = max(float(np.median(std)) * 0.1, 1e-3)
        return cls(rows.mean(0).astype(np.float32), np.maximum(std, floor).astype(np.float32))

    def transform(self, features: np.ndarray, present: np.ndarray) -> np.ndarray:
        scaled = np.clip((features - self.mean) / self.scale, -CLIP, CLIP)
        # A missing image sits at the mean: it moves a linear model nowhere.
        return np.where(present[:, None], scaled, 0.0).astype(np.float32)


# -- linear heads ----------------------------------------------------------------------------


@dataclass
class LinearHead:
    """One task's linear layer: multiclass softmax, per-label sigmoids, or a regression line."""

    task: Task
    coef: np.ndarray  # (outputs, features)
    intercept: np.ndarray  # (outputs,)

    def scores(self, features) -> np.ndarray:
        return np.asarray(features @ self.coef.T, dtype=np.float32) + self.intercept


def fit_head(task: Task, features, targets: np.ndarray, mask: np.ndarray, *, C: float, balanced: bool) -> LinearHead:
    """Fit one head on the labelled rows; labels never seen in training get a fixed prior."""
    width = features.shape[1]
    if task.kind == "regression":
        from sklearn.linear_model import Ridge

        rows = mask.astype(bool)
        model = Ridge(alpha=1.0 / C).fit(features[rows], targets[rows])
        return LinearHead(task, model.coef_.reshape(1, width).astype(np.float32), np.atleast_1d(model.intercept_).astype(np.float32))
    if task.kind == "multiclass":
        return _fit_multiclass(task, features, targets, mask, C=C, balanced=balanced)
    coefs, intercepts = [], []
    for column in range(task.output_size):
        rows = mask[:, column].astype(bool)
        coef, intercept = _fit_binary(features[rows], targets[rows, column], width, C=C, balanced=balanced)
        coefs.append(coef)
        intercepts.append(intercept)
    return LinearHead(task, np.stack(coefs).astype(np.float32), np.array(intercepts, dtype=np.float32))


def _fit_multiclass(task: Task, features, targets, mask, *, C: float, balanced: bool) -> LinearHead:
    from sklearn.linear_model import LogisticRegression

    rows = mask.astype(bool)
    y = targets[rows].astype(int)
    coef = np.zeros((task.output_size, features.shape[1]), dtype=np.float32)
    intercept = np.full(task.output_size, -20.0, dtype=np.float32)  # unseen classes: never chosen
    seen = np.unique(y)
    if len(seen) == 1:
        intercept[seen[0]] = 0.0
        return LinearHead(task, coef, intercept)
    model = LogisticRegression(C=C, max_iter=1000, class_weight="balanced" if balanced else None).fit(features[rows], y)
    if len(seen) == 2:  # scikit-learn keeps one row for two classes: spread it symmetrically
        coef[seen[1]], coef[seen[0]] = model.coef_[0] / 2, -model.coef_[0] / 2
        intercept[seen[1]], intercept[seen[0]] = model.intercept_[0] / 2, -model.intercept_[0] / 2
    else:
        coef[seen], intercept[seen] = model.coef_, model.intercept_
    return LinearHead(task, coef, intercept)


def _fit_binary(features, y: np.ndarray, width: int, *, C: float, balanced: bool) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    positives = float(y.sum())
    if positives == 0 or positives == len(y):  # one class only: a constant prior
        rate = (positives + 0.5) / (len(y) + 1.0)
        return np.zeros(width, dtype=np.float32), float(np.log(rate / (1 - rate)))
    model = LogisticRegression(C=C, max_iter=1000, class_weight="balanced" if balanced else None).fit(features, y.astype(int))
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def is_imbalanced(task: Task, targets: np.ndarray, mask: np.ndarray, ratio: float = 1.5) -> bool:
    """True when the most frequent class outnumbers the rarest present one by `ratio`."""
    if task.kind == "multiclass":
        counts = np.bincount(targets[mask.astype(bool)].astype(int), minlength=task.output_size)
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.min() > ratio
    if task.kind == "multilabel":
        return True  # findings are rare by nature: weight positives per label
    return False


@dataclass
class LinearHeads:
    heads: dict[str, LinearHead] = field(default_factory=dict)

    def scores(self, features) -> dict[str, np.ndarray]:
        return {name: head.scores(features) for name, head in self.heads.items()}

    def state(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {}
        for name, head in self.heads.items():
            arrays[f"{prefix}.{name}.coef"] = head.coef
            arrays[f"{prefix}.{name}.intercept"] = head.intercept
        return {"tasks": list(self.heads)}, arrays

    @classmethod
    def from_state(cls, schema: LabelSchema, meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str) -> "LinearHeads":
        return cls({name: LinearHead(schema.task(name), arrays[f"{prefix}.{name}.coef"], arrays[f"{prefix}.{name}.intercept"])
                    for name in meta["tasks"]})
