"""End to end: generate tickets, train small models, and check on a held-out generated split
that photo + text beats the photo alone and the text alone.

Kept small for a 2-core machine: four faults whose damage is easy to see at low resolution,
a tiny CNN at 96 px, the real pretrained MiniLM frozen (its outputs are computed once), and
no OCR (`ocr_photos=False`: OCR of a few hundred photos alone takes minutes; OCR has its
own tests and the full eight-fault evaluation is in EVALUATION.md). The data set makes
fusion necessary by construction: a quarter of the tickets only show the fault in the
photo, another quarter only in the words, and a vague ticket with a clean photo means no
visible fault.
"""

from __future__ import annotations

import pytest

from twinlens.contract.spec import ImageEncoderSpec

from twinlens_support_ticket.dataset import read_export
from twinlens_support_ticket.generate.build import make_sample_dataset
from twinlens_support_ticket.plugin import SupportTicketPlugin

pytestmark = pytest.mark.slow

MODALITY_SETS = {"fused": ["image", "text"], "photo": ["image"], "text": ["text"]}
FAULTS = ("cracked_screen", "broken_port", "cosmetic_damage", "no_visible_fault")


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    train = read_export(make_sample_dataset(root / "train", n=640, seed=100, faults=FAULTS), progress=False, ocr_photos=False)
    test = read_export(make_sample_dataset(root / "test", n=240, seed=101, faults=FAULTS), progress=False, ocr_photos=False)
    return root, train, test


@pytest.fixture(scope="module")
def scores(splits):
    from twinlens.engine.evaluation import evaluate_bundle
    from twinlens.engine.training import train_model

    root, train, test = splits
    plugin = SupportTicketPlugin()
    results = {}
    for name, modalities in MODALITY_SETS.items():
        spec = plugin.default_model_spec().model_copy(update={
            "modalities": modalities,
            "image_encoder": ImageEncoderSpec(name="test_resnet", image_size=96),
        })
        config = plugin.training_defaults().model_copy(
            update={"epochs": 25, "patience": 25, "modality_dropout": 0.5, "progress": False, "seed": 3})
        bundle = train_model(plugin, train, out_dir=root / f"bundle-{name}", spec=spec, config=config).bundle_dir
        results[name] = evaluate_bundle(bundle, test)["heads"]
        results[name]["by_evidence"] = _accuracy_by_evidence(bundle, test)
    print({name: (round(heads["fault"]["macro_f1"], 3), heads["by_evidence"]) for name, heads in results.items()})
    return results


def _accuracy_by_evidence(bundle, test) -> dict[str, float]:
    """Fault accuracy per evidence mode (which inputs show the fault; recorded by the generator)."""
    from twinlens.engine.predictor import Predictor

    predictions = Predictor.from_bundle(bundle).predict(test.samples, contributions=False)
    right: dict[str, list[bool]] = {}
    for sample, prediction in zip(test.samples, predictions):
        right.setdefault(sample.meta["evidence"], []).append(prediction.heads["fault"].label == sample.labels["fault"])
    return {mode: round(sum(hits) / len(hits), 3) for mode, hits in right.items()}


def test_fusion_beats_photo_only_and_text_only_on_held_out_tickets(scores):
    # At this size (640 tickets) the fused model still half-memorises vague ticket texts, so
    # its lead over the text is small; EVALUATION.md has the 3,000-ticket figures (+0.14).
    fused, photo, text = (scores[name]["fault"]["macro_f1"] for name in ("fused", "photo", "text"))
    assert fused >= photo + 0.10, scores
    assert fused >= text + 0.02, scores


def test_fusion_gets_right_what_each_input_alone_cannot(scores):
    by_mode = {name: heads["by_evidence"] for name, heads in scores.items()}
    # Vague words, damaged photo: the text alone is guessing; the fused model reads the photo.
    assert by_mode["fused"]["photo"] >= by_mode["text"]["photo"] + 0.30, by_mode
    # Clean photo, specific words: the photo alone is guessing; the fused model reads the words.
    assert by_mode["fused"]["text"] >= by_mode["photo"]["text"] + 0.40, by_mode


def test_every_model_learns_something(scores):
    # Chance is 1/4 here; each input alone still carries most tickets.
    for name, heads in scores.items():
        assert heads["fault"]["macro_f1"] > 0.45, (name, heads["fault"])
    assert scores["fused"]["severity"]["macro_f1"] > 0.35
