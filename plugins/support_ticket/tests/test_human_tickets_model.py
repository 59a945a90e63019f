"""The default recipe, trained on generated tickets only, beats the zero-shot cold start on
tickets written by a person (phrasing the generator never produces)."""

from __future__ import annotations

import pytest

from twinlens_support_ticket.human_eval import score_bundle, score_zero_shot
from twinlens_support_ticket.plugin import SupportTicketPlugin


@pytest.mark.slow
def test_model_trained_on_generated_tickets_beats_zero_shot_on_hand_written_ones(tmp_path):
    from twinlens.engine.recipe import RecipeOptions, train_auto

    plugin = SupportTicketPlugin()
    export = plugin.make_sample_dataset(tmp_path / "generated", n=400, seed=0)
    dataset = plugin.read_dataset(export)
    # A fixed number of epochs and a generous limit: the same network on a slow or fast machine.
    config = plugin.training_defaults().model_copy(update={"epochs": 20, "progress": False})
    train_auto(plugin, dataset, out_dir=tmp_path / "model", config=config, options=RecipeOptions(time_limit=1200, progress=False))
    trained, cold = score_bundle(tmp_path / "model"), score_zero_shot()
    print(f"hand-written tickets, fault macro-F1: trained {trained['fault_macro_f1']:.3f}, zero-shot {cold['fault_macro_f1']:.3f}")
    assert trained["n"] == cold["n"] >= 60
    assert trained["fault_macro_f1"] > cold["fault_macro_f1"]
