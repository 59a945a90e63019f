"""The lexical ("wide") text branch: hashed word and char n-grams of the exact text.

A frozen sentence encoder maps "error E-4471" and "error E-4417" to nearly the same
vector; in real tickets and notes such codes, part numbers and names often carry the
answer. This branch hashes word 1-2 grams and char 2-5 grams (within word boundaries) into
a fixed number of buckets, weights them by log term frequency (L2-normalised), and the
network learns one vector per bucket (an EmbeddingBag) that is added to every token of
that text, so any fusion strategy sees it. Hashing needs no fitted vocabulary: nothing to
store but the bucket count.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def _vectorizers(buckets: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    options = {"n_features": buckets, "alternate_sign": False, "norm": None, "lowercase": True, "dtype": np.float32}
    return (HashingVectorizer(analyzer="word", ngram_range=(1, 2), **options),
            HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), **options))


def hashed_ngrams(text: str, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(bucket ids, weights) of one text: log(1 + tf), L2-normalised over both analysers."""
    counts = None
    for vectorizer in _vectorizers(buckets):
        row = vectorizer.transform([text])
        counts = row if counts is None else counts + row
    counts = counts.tocsr()
    counts.sum_duplicates()
    weights = np.log1p(counts.data).astype(np.float32)
    norm = float(np.sqrt((weights**2).sum())) or 1.0
    return counts.indices.astype(np.int64), weights / norm
