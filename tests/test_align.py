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


def _tiny_clip_folder(root) -> str:
    """A randomly initialised CLIP in Hugging Face layout, written locally (nothing downloaded)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    config = CLIPConfig(text_config=dict(vocab_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                         max_position_embeddings=64, bos_token_id=0, eos_token_id=1),
                        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                           image_size=32, patch_size=8), projection_dim=16)
    folder = root / "clip"
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              tokenizer=CLIPTokenizer())
    processor.save_pretrained(folder)
    return str(folder)


def test_a_local_clip_folder_gives_the_vectors_to_align(tmp_path):
    from PIL import Image

    from twinlens.contract.sample import Sample
    from twinlens.engine.align import AlignmentError, align_clip

    samples = [Sample(image=Image.new("RGB", (40, 40), (20 * i, 90, 200 - 10 * i)), texts={"text": f"photo {i}"}) for i in range(12)]
    samples.append(Sample(image=None, texts={"text": "no photo"}))  # not a pair: left out
    result = align_clip(_tiny_clip_folder(tmp_path), samples, "text", tmp_path / "space", AlignOptions(dim=8, epochs=3))
    assert result.config["base"] == "clip" and result.metrics["pairs"] == 12
    assert result.arrays["image.weight"].shape == (8, 16)  # CLIP's projection_dim in, the space's dim out
    assert load_alignment(tmp_path / "space").config["clip_path"].endswith("clip")
    with pytest.raises(AlignmentError):
        align_clip(tmp_path / "no-such-clip", samples, "text", tmp_path / "other")
