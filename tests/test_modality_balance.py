"""Keeping one modality from carrying the model: the per-modality auxiliary loss (`only()`
matches masking; each modality learns alone) and dropout on encoder features."""

import random

import torch

from engine_helpers import COLOURS, fast_config, square_image, tiny_spec
from twinlens.engine.data import batches, collate
from twinlens.engine.inference import infer_logits
from twinlens.contract.plugin import Dataset
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.engine.training import _TrainingRun, split_dataset

SCHEMA = LabelSchema(tasks=(Task(name="colour", kind="multiclass", labels=tuple(Label(name=c) for c in COLOURS)),))


def _redundant(n, seed):
    """The photo and the words both tell the colour: either alone is enough."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        colour = rng.choice(list(COLOURS))
        samples.append(Sample(image=square_image(colour, rng), texts={"text": f"the case is {colour}"},
                              labels={"colour": colour}, id=str(i)))
    return samples


def test_only_gives_the_same_outputs_as_hiding_the_other_modalities():
    train, val = split_dataset(Dataset(_redundant(40, 1), SCHEMA), 0.25, 0)
    run = _TrainingRun(tiny_spec(), fast_config(), train, val, torch.device("cpu"))
    model = run.model.eval()
    batch = collate(run.train_encoded[:8], run.pre)
    with torch.no_grad():
        features = model.encode(batch)
        for modality in ("image", "text"):
            hidden = {m: p if m == modality else torch.zeros_like(p) for m, p in batch["present"].items()}
            expected = model(batch, hidden)["colour"]
            assert torch.allclose(model.heads_from(model.only(features, modality))["colour"], expected, atol=1e-6)


def test_training_step_adds_the_unimodal_term():
    train, val = split_dataset(Dataset(_redundant(40, 2), SCHEMA), 0.25, 0)
    rows = torch.arange(8)
    losses = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        run = _TrainingRun(tiny_spec(), fast_config(unimodal_loss_weight=weight), train, val, torch.device("cpu"))
        run.model.eval()  # no dropout: both runs see the same network
        losses[weight] = float(run._step(rows).detach())
    assert losses[1.0] > losses[0.0]


def _alone_accuracy(weight: float) -> dict[str, float]:
    """Train 15 epochs (every epoch kept: early stopping on the fused score would keep the
    first epoch that gets the fused answer right) and score each modality alone."""
    train, val = split_dataset(Dataset(_redundant(200, 3), SCHEMA), 0.2, 0)
    # No modality dropout: the fused loss alone then never shows the heads one modality.
    run = _TrainingRun(tiny_spec(), fast_config(modality_dropout=0.0, unimodal_loss_weight=weight), train, val, torch.device("cpu"))
    epochs = 15
    optimizer, scheduler = run._optimizer(epochs * len(list(batches(len(run.train_encoded), 32))))
    for epoch in range(1, epochs + 1):
        run._epoch(optimizer, scheduler, epoch)
    probe = _redundant(60, 4)
    encoded = run.pre.encode_many(probe)
    truth = torch.tensor([list(COLOURS).index(s.labels["colour"]) for s in probe])
    scores = {}
    for modality in ("image", "text"):
        logits = infer_logits(run.model, run.pre, encoded, device=torch.device("cpu"), modalities=[modality])
        scores[modality] = float((logits["colour"].argmax(1) == truth).float().mean())
    return scores


def test_with_the_unimodal_loss_each_modality_alone_predicts_well():
    scores = _alone_accuracy(1.0)
    assert min(scores.values()) >= 0.9, scores


def test_without_it_the_modality_the_fused_model_does_not_need_stays_weaker():
    # Image colour is the easier cue for the tiny models here, so text alone lags behind.
    without, with_loss = _alone_accuracy(0.0), _alone_accuracy(1.0)
    assert min(without.values()) < min(with_loss.values()), (without, with_loss)


def test_feature_dropout_acts_in_training_only():
    train, val = split_dataset(Dataset(_redundant(40, 5), SCHEMA), 0.25, 0)
    spec = tiny_spec(feature_dropout=0.5)
    run = _TrainingRun(spec, fast_config(), train, val, torch.device("cpu"))
    batch = collate(run.train_encoded[:8], run.pre)
    model = run.model
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(batch)["colour"], model(batch)["colour"])
        model.train()
        assert not torch.equal(model(batch)["colour"], model(batch)["colour"])
        # Raw encoder features reach the projection with about half of them zeroed.
        raw = torch.ones(4, 3, 10)
        dropped = model.feature_dropout(raw)
        assert 0.3 < float((dropped == 0).float().mean()) < 0.7
