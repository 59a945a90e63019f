"""Frozen encoders' features, computed once per training run: rows of like length are
encoded together yet come back in the rows' order with the values each row gets alone;
a batch of cached rows is cut to its longest row; and under a time limit the cache takes
only the training rows it can encode in its share of the limit."""

from __future__ import annotations

import random
import time

import torch

from engine_helpers import TINY_TEXT, dataset, fast_config, tiny_spec, xor_samples
from twinlens.contract.sample import Sample
from twinlens.engine import training
from twinlens.engine.inference import attach_cache, frozen_encoder_cache
from twinlens.engine.training import _TrainingRun

CPU = torch.device("cpu")


def _frozen_text_spec():
    return tiny_spec(modalities=["text"]).model_copy(update={"text_encoder": TINY_TEXT.model_copy(update={"freeze": True})})


def _texts(n: int, seed: int) -> list[Sample]:
    """Texts from one word to a dozen, in no particular order of length."""
    rng = random.Random(seed)
    words = ["cat", "dog", "red", "blue", "pump", "valve", "leak", "error", "E42", "fan"]
    return [Sample(texts={"text": " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))},
                   labels={"xor": rng.choice(["same", "different"])}, id=str(i)) for i in range(n)]


def test_the_cache_holds_each_row_in_order_as_it_is_encoded_alone():
    samples = dataset(_texts(150, 3))
    run = _TrainingRun(_frozen_text_spec(), fast_config(), samples, dataset(_texts(10, 4)), CPU)
    cache = frozen_encoder_cache(run.model, run.pre, run.train_encoded, CPU, batch_size=16)
    tokens, mask = cache["text"]
    lengths = [len(e.tokens["text"]) for e in run.train_encoded]
    assert len(set(lengths)) > 5 and mask.sum(1).tolist() == lengths  # every row where it belongs
    for row in (0, 7, 61, 149):
        alone, alone_mask = frozen_encoder_cache(run.model, run.pre, [run.train_encoded[row]], CPU)["text"]
        width = alone.shape[1]
        assert alone_mask[0].tolist() == mask[row, :width].tolist() and not mask[row, width:].any()
        assert torch.allclose(alone[0].float(), tokens[row, :width].float(), atol=2e-3), row


def test_a_batch_of_cached_rows_is_cut_to_its_longest_row():
    tokens = torch.randn(4, 10, 3).half()
    mask = torch.zeros(4, 10, dtype=torch.bool)
    for row, length in enumerate((2, 9, 3, 4)):
        mask[row, :length] = True
    batch: dict = {}
    attach_cache(batch, {"text": (tokens, mask)}, torch.tensor([0, 2, 3]), CPU)
    cut, cut_mask = batch["cached"]["text"]
    assert cut.shape == (3, 4, 3) and cut_mask.shape == (3, 4)
    assert torch.equal(cut, tokens[[0, 2, 3], :4].float()) and torch.equal(cut_mask, mask[[0, 2, 3], :4])
    gap = torch.zeros(2, 6, dtype=torch.bool)
    gap[0, 4:] = True  # an image slot filled after an empty one: the columns up to it stay
    attach_cache(batch, {"image": (torch.zeros(2, 6, 3), gap)}, torch.tensor([0, 1]), CPU)
    assert batch["cached"]["image"][1].shape == (2, 6)


def test_under_a_time_limit_the_cache_takes_the_training_rows_that_fit(monkeypatch):
    train, val = dataset(_texts(2000, 5)), dataset(_texts(200, 6))
    # Without a limit every row trains; the network of the recipe's default has one.
    assert len(_TrainingRun(_frozen_text_spec(), fast_config(), train, val, CPU).rows_used) == 2000
    monkeypatch.setattr(training, "FROZEN_CACHE_SHARE", 1e-9)  # nothing fits: the floor trains
    capped = _TrainingRun(_frozen_text_spec(), fast_config(time_limit_seconds=60.0), train, val, CPU)
    assert len(capped.rows_used) == training.MIN_CACHED_TRAIN_ROWS == len(capped.train_encoded)
    assert capped.train_cache["text"][0].shape[0] == capped.train_targets.values["xor"].shape[0] == training.MIN_CACHED_TRAIN_ROWS
    assert capped.rows_used == sorted(set(capped.rows_used)) and capped.rows_used[-1] > 1000  # a sample, not the first rows
    monkeypatch.setattr(training, "FROZEN_CACHE_SHARE", 0.4)

    def slow_cache(model, pre, encoded, device, **kw):  # the pace of a real encoder on a CPU
        time.sleep(0.002 * len(encoded))
        return frozen_encoder_cache(model, pre, encoded, device, **kw)

    monkeypatch.setattr(training, "frozen_encoder_cache", slow_cache)
    timed = _TrainingRun(_frozen_text_spec(), fast_config(time_limit_seconds=1.0), train, val, CPU)
    # The validation rows' pace (over 2 ms a row) says how many fit in 0.4 s: under 200.
    assert len(timed.rows_used) == training.MIN_CACHED_TRAIN_ROWS
    roomy = _TrainingRun(_frozen_text_spec(), fast_config(time_limit_seconds=6.0), train, val, CPU)
    assert training.MIN_CACHED_TRAIN_ROWS < len(roomy.rows_used) < 2000  # 2.4 s: about a thousand
    # Unfrozen encoders learn from the raw inputs every step: nothing is cached or capped.
    unfrozen = _TrainingRun(tiny_spec(), fast_config(time_limit_seconds=1.0), dataset(xor_samples(400, 1)), dataset(xor_samples(40, 2)), CPU)
    assert len(unfrozen.rows_used) == 400 and unfrozen.train_cache is None
