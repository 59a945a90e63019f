"""The lexical branch learns a signal only the exact words carry: the error code at the
end of a long ticket (an email thread, a pasted log), past the sentence encoder's
128-token window. The transformer never sees the code; the hashed n-grams of the whole
text do. Real tickets put codes, part numbers and order references exactly there."""

from __future__ import annotations

import random

import pytest

from twinlens.contract.plugin import Dataset
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.contract.spec import ModelSpec, TextEncoderSpec, TrainConfig

SCHEMA = LabelSchema(tasks=(Task(name="team", kind="multiclass", labels=(Label(name="firmware"), Label(name="hardware"))),))
OPENINGS = ["hi there", "hello support", "good morning", "hey", "dear team", "urgent", "please help", "hi again"]
STORIES = [
    "my printer stopped in the middle of a job", "the unit beeps three times when it starts",
    "the screen went dark after the update", "it worked yesterday and now it does not",
    "we bought it last month from the shop in town", "the light keeps blinking orange",
    "nothing happens when I press the button", "it shows a message and then reboots",
]
# The only difference between the classes: which of two codes the ticket ends with.
CODES = {"firmware": "E-4471", "hardware": "E-9038"}


def _tickets(n: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        team = "firmware" if i % 2 else "hardware"
        thread = ". ".join(rng.choice(STORIES) for _ in range(16))  # well over 128 tokens
        text = f"{rng.choice(OPENINGS)}, {thread}. thanks. error log: {CODES[team]}"
        samples.append(Sample(texts={"text": text}, labels={"team": team}, id=str(i)))
    return Dataset(samples, SCHEMA)


def _accuracy(lexical_buckets: int, train: Dataset, test: Dataset, tmp_path) -> float:
    from twinlens.engine.training import fit_network

    spec = ModelSpec(text_encoder=TextEncoderSpec(freeze=True), modalities=["text"], lexical_buckets=lexical_buckets, hidden_dim=64)
    config = TrainConfig(epochs=25, patience=25, lr=3e-3, batch_size=32, progress=False, modality_dropout=0.0, seed=0)
    fitted = fit_network(train, test, spec, config)
    return fitted.report["heads"]["team"]["accuracy"]


@pytest.mark.slow
def test_lexical_branch_learns_a_code_the_sentence_encoder_misses(tmp_path):
    train, test = _tickets(240, seed=1), _tickets(120, seed=2)
    without = _accuracy(0, train, test, tmp_path)
    with_lexical = _accuracy(1 << 14, train, test, tmp_path)
    print(f"held-out accuracy: sentence encoder alone {without:.3f}, with the lexical branch {with_lexical:.3f}")
    assert without < 0.7, "the sentence encoder alone was expected to miss the code past its window"
    assert with_lexical >= 0.95
