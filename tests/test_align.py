"""The image-text space (engine/align.py): symmetric InfoNCE maps paired vectors into one
space where a text finds its own photo and photos of its group far above chance; the
folder round-trips and refuses modified weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinlens.contract.errors import BundleError
from twinlens.engine.align import AlignOptions, info_nce, load_alignment, project, save_alignment, train_maps


def _pairs(n: int = 240, seed: int = 0):
    """Two views (32-d "images", 24-d "texts") of the same latent, in five groups."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 5, n)
    latent = rng.normal(size=(5, 8))[groups] * 2 + rng.normal(size=(n, 8)) * 0.5
    images = latent @ rng.normal(size=(8, 32)) + rng.normal(size=(n, 32)) * 0.3
    texts = latent @ rng.normal(size=(8, 24)) + rng.normal(size=(n, 24)) * 0.3
    return images.astype(np.float32), texts.astype(np.float32), [int(g) for g in groups]


def test_info_nce_is_symmetric_and_lowest_on_the_diagonal():
    logits = torch.randn(6, 6)
    assert torch.isclose(info_nce(logits), info_nce(logits.T))
    assert info_nce(torch.eye(6) * 20) < info_nce(torch.randn(6, 6))


def test_aligned_texts_find_their_photos_far_above_chance():
    images, texts, groups = _pairs()
    arrays, metrics = train_maps(images, texts, AlignOptions(dim=16, epochs=60), groups)
    held = metrics["heldout"]
    assert held["recall@5"] > 4 * held["random_recall@5"], held
    assert held["group_precision@5"] > 2 * held["random_group_precision"], held
    assert arrays["image.weight"].shape == (16, 32) and arrays["text.weight"].shape == (16, 24)
    shared = project(arrays, "image", images[:3])
    np.testing.assert_allclose(np.linalg.norm(shared, axis=1), 1.0, atol=1e-5)


def test_the_folder_round_trips_and_refuses_changed_weights(tmp_path):
    images, texts, _ = _pairs(40)
    arrays, metrics = train_maps(images, texts, AlignOptions(dim=8, epochs=5))
    saved = save_alignment(tmp_path / "space", arrays, {"format": "twinlens-alignment/1", "text_kind": "text", "dim": 8,
                                                        "metrics": metrics})
    loaded = load_alignment(saved.out_dir)
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], value)
    weights = tmp_path / "space" / "alignment.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(BundleError):
        load_alignment(tmp_path / "space")
