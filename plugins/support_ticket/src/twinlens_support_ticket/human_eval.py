"""Score a model, and the zero-shot cold start, on hand-written customer tickets.

`python -m twinlens_support_ticket.human_eval [--model BUNDLE] [--data PATH]`

The generated data set (`make_sample_dataset`) is phrased the way its templates phrase
things; a model can score well on it and still miss how customers really write. The
fixture `HUMAN_TICKETS` holds tickets written by hand for this check (typos, slang,
run-on sentences, non-native English, irrelevant context), text only, never produced by
the generator and never used for training: a held-out test set. See
`plugins/support_ticket/tests/fixtures/README.md`.

The fixture lives in the plugin's `tests/fixtures` folder, next to `src/`, so
`HUMAN_TICKETS` only exists in a source checkout (an editable install of the plugin); an
installed wheel does not ship it. Pass another export with `data=` / `--data`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# <plugin>/src/twinlens_support_ticket/human_eval.py -> <plugin>/tests/fixtures/human_tickets.jsonl
HUMAN_TICKETS: Path = (Path(__file__).resolve().parent / ".." / ".." / "tests" / "fixtures" / "human_tickets.jsonl").resolve()

KEYS = ("fault_macro_f1", "fault_accuracy", "severity_macro_f1", "n")


def _samples(data: Path):
    from twinlens.contract.plugin import DatasetOptions

    from twinlens_support_ticket.dataset import read_export

    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data} not found (the hand-written fixture is only present in a source checkout)")
    # Text-only tickets: no photos, so no OCR to run.
    return read_export(data, DatasetOptions(), progress=False, ocr_photos=False).samples


def _scores(samples: list, predictions: list) -> dict[str, Any]:
    """Macro-F1 over the labels present in the data, and fault accuracy."""
    from sklearn.metrics import accuracy_score, f1_score

    result: dict[str, Any] = {}
    for task in ("fault", "severity"):
        rows = [(s.labels.get(task), p.heads[task].label) for s, p in zip(samples, predictions)
                if s.labels.get(task) is not None and task in p.heads]
        truth = [t for t, _ in rows]
        guess = [g if g is not None else "" for _, g in rows]
        present = sorted(set(truth))
        result[f"{task}_macro_f1"] = float(f1_score(truth, guess, labels=present, average="macro", zero_division=0)) if rows else float("nan")
        if task == "fault":
            result["fault_accuracy"] = float(accuracy_score(truth, guess)) if rows else float("nan")
    result["n"] = len(samples)
    return {key: result[key] for key in KEYS}


def score_bundle(bundle: Path, data: Path = HUMAN_TICKETS) -> dict[str, Any]:
    """A trained bundle's scores on `data`: fault macro-F1 and accuracy, severity macro-F1, n."""
    from twinlens.engine.predictor import Predictor

    samples = _samples(data)
    predictions = Predictor.from_bundle(bundle).predict(samples, contributions=False)
    return _scores(samples, predictions)


def score_zero_shot(data: Path = HUMAN_TICKETS, *, clip_model: str | None = None) -> dict[str, Any]:
    """The zero-shot cold start's scores on `data` (similarity to the label descriptions)."""
    from twinlens.engine.zero_shot import ZeroShotClassifier, ZeroShotConfig

    from twinlens_support_ticket.plugin import SupportTicketPlugin

    plugin = SupportTicketPlugin()
    samples = _samples(data)
    classifier = ZeroShotClassifier(plugin.label_schema(), text_inputs=plugin.default_model_spec().text_inputs,
                                    config=ZeroShotConfig(clip_model=clip_model))
    predictions = []
    for start in range(0, len(samples), 64):
        predictions.extend(classifier.predict(samples[start:start + 64]))
    return _scores(samples, predictions)


def format_scores(columns: dict[str, dict[str, Any]]) -> str:
    names = list(columns)
    lines = [f"{'':<20}" + "".join(f"{name:>14}" for name in names)]
    for key in KEYS:
        cells = []
        for name in names:
            value = columns[name][key]
            cells.append(f"{value:>14d}" if key == "n" else f"{value:>14.3f}")
        lines.append(f"{key:<20}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score a bundle and the zero-shot cold start on hand-written tickets.")
    parser.add_argument("--model", type=Path, help="trained model bundle; omitted: zero-shot only")
    parser.add_argument("--data", type=Path, default=HUMAN_TICKETS, help=f"labelled export (default: {HUMAN_TICKETS})")
    parser.add_argument("--json", type=Path, help="also write the scores as JSON here")
    args = parser.parse_args(argv)
    columns = {"zero-shot": score_zero_shot(args.data)}
    if args.model is not None:
        columns["model"] = score_bundle(args.model, args.data)
    print(f"hand-written tickets: {args.data}")
    print(format_scores(columns))
    if args.json:
        args.json.write_text(json.dumps(columns, indent=2))


if __name__ == "__main__":
    main()
