"""Score the zero-shot cold start on a labelled export: `python -m twinlens_support_ticket.zero_shot_eval --data PATH`.

Prints the same figures `twinlens evaluate` prints for a trained model (accuracy, macro-F1,
AUROC, ECE per head, per-class F1), for the answers the plugin gives before any training:
similarity of the ticket text and the OCR text to the label descriptions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from twinlens_support_ticket.plugin import SupportTicketPlugin


def zero_shot_report(data: Path, *, clip_model: str | None = None) -> dict[str, Any]:
    from twinlens.engine.zero_shot import ZeroShotClassifier, ZeroShotConfig, evaluate_zero_shot

    plugin = SupportTicketPlugin()
    dataset = plugin.read_dataset(data)
    classifier = ZeroShotClassifier(plugin.label_schema(), text_inputs=plugin.default_model_spec().text_inputs,
                                    config=ZeroShotConfig(clip_model=clip_model))
    return evaluate_zero_shot(classifier, dataset)


def format_report(report: dict[str, Any]) -> str:
    lines = [f"zero-shot ({report['model_version']}) on n={report['n']}",
             f"{'head':<10}{'n':>6}{'accuracy':>10}{'macro-F1':>10}{'AUROC':>8}{'ECE':>8}"]
    for name, head in report["heads"].items():
        auroc = "-" if head.get("auroc") is None else f"{head['auroc']:.3f}"
        lines.append(f"{name:<10}{head['n']:>6}{head['accuracy']:>10.3f}{head['macro_f1']:>10.3f}{auroc:>8}{head['ece']:>8.3f}")
    for name, head in report["heads"].items():
        lines.append(f"{name}: per-class F1  " + "  ".join(f"{label} {scores['f1']:.2f}" for label, scores in head["per_class"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="helpdesk export (JSONL/CSV) or its folder")
    parser.add_argument("--clip-model", help="local folder of a CLIP-style model; adds the photo to the zero-shot")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    report = zero_shot_report(args.data, clip_model=args.clip_model)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
