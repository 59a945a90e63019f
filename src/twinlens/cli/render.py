"""Rich tables for metrics reports, predictions and the plugin list."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from twinlens.contract.errors import RowError

console = Console(highlight=False)
CLASSIFIER_METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("auroc", "AUROC"), ("ece", "ECE"))
REGRESSION_METRICS = (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R2"))


def number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def print_report(report: dict[str, Any], title: str) -> None:
    """One summary table over the heads, then per-class precision/recall/F1 per head."""
    summary = Table(title=f"{title} (n={report.get('n', '-')})", title_justify="left")
    for column in ("head", "n", *(label for _, label in CLASSIFIER_METRICS + REGRESSION_METRICS)):
        summary.add_column(column, justify="left" if column == "head" else "right")
    for name, head in report.get("heads", {}).items():
        values = [number(head.get(key)) for key, _ in CLASSIFIER_METRICS + REGRESSION_METRICS]
        summary.add_row(Text(name), number(head.get("n")), *values)
    console.print(summary)
    for name, head in report.get("heads", {}).items():
        if head.get("per_class"):
            console.print(_per_class_table(name, head["per_class"]))


def print_candidates(metrics: dict[str, Any], title: str) -> None:
    """Every candidate of an automatic run (baselines, zero-shot, network, ensemble) side by
    side on the same validation split, which one ships and what fusion adds."""
    table = Table(title=title, title_justify="left")
    for column in ("candidate", "modalities", "score", "accuracy", "macro-F1", "AUROC", "ECE", "seconds"):
        table.add_column(column, justify="left" if column in ("candidate", "modalities") else "right")
    rows = dict(metrics.get("candidates", {}))
    for name, candidate in rows.items():
        mean = candidate["report"].get("mean", {})
        table.add_row(Text(name), ",".join(candidate.get("modalities", [])), number(candidate.get("score")),
                      number(mean.get("accuracy")), number(mean.get("macro_f1")), number(mean.get("auroc")),
                      number(mean.get("ece")), number(candidate.get("seconds"), 1))
        for modality, report in candidate.get("notes", {}).get("alone", {}).items():
            alone = report.get("mean", {})
            table.add_row(Text(f"  {name}, {modality} alone"), modality, number(alone.get("score")), number(alone.get("accuracy")),
                          number(alone.get("macro_f1")), number(alone.get("auroc")), number(alone.get("ece")), "")
    shipped = metrics.get("mean", {})
    table.add_row(Text(f"shipped: {metrics.get('shipped')}", style="bold"), "", number(shipped.get("score")),
                  number(shipped.get("accuracy")), number(shipped.get("macro_f1")), number(shipped.get("auroc")),
                  number(shipped.get("ece")), number(metrics.get("seconds"), 1))
    console.print(table)
    for name, candidate in rows.items():
        notes = candidate.get("notes", {})
        if "weighed_on_rows" in notes:
            console.print(Text(f"{name}: early-stopped on {notes['stopped_on_rows']} validation rows, weighed by "
                               f"selection on the other {notes['weighed_on_rows']} (groups it did not stop on)"))
    console.print(Text(f"why: {metrics.get('shipped_reason', '')}"))
    gain = metrics.get("what_fusion_adds")
    if gain and gain.get("gain") is not None:
        console.print(Text(f"what fusion adds: shipped {gain['shipped']:.3f} vs best single-modality model "
                           f"{gain['best_single_modality']:.3f} ({gain['gain']:+.3f})"))


def print_members(report: dict[str, Any], title: str) -> None:
    """An ensemble bundle's evaluation: every kept candidate next to what ships."""
    members = report.get("members")
    if not members:
        return
    table = Table(title=title, title_justify="left")
    for column in ("model", "weight", "modalities", "score", "accuracy", "macro-F1", "AUROC", "ECE"):
        table.add_column(column, justify="left" if column in ("model", "modalities") else "right")
    for name, member in members.items():
        mean = member["report"].get("mean", {})
        weight = number(member["weight"], 2) if member["kind"] != "view" else ""
        table.add_row(Text(name), weight, ",".join(member["modalities"]), number(mean.get("score")), number(mean.get("accuracy")),
                      number(mean.get("macro_f1")), number(mean.get("auroc")), number(mean.get("ece")))
    mean = report.get("mean", {})
    table.add_row(Text(f"shipped: {report.get('shipped')}", style="bold"), "", ",".join(report.get("modalities", [])),
                  number(mean.get("score")), number(mean.get("accuracy")), number(mean.get("macro_f1")),
                  number(mean.get("auroc")), number(mean.get("ece")))
    console.print(table)


def _per_class_table(head: str, per_class: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=f"{head}: per class", title_justify="left")
    table.add_column("label")
    for column in ("precision", "recall", "F1", "support"):
        table.add_column(column, justify="right")
    for label, scores in per_class.items():
        table.add_row(
            Text(label), number(scores.get("precision")), number(scores.get("recall")),
            number(scores.get("f1")), number(scores.get("support")),
        )
    return table


def print_skipped(skipped: list[RowError], source: str) -> None:
    if not skipped:
        return
    lines = sorted({row.line for row in skipped})
    console.print(Text(f"{source}: skipped {len(lines)} bad row(s):", style="yellow"))
    for row in skipped[:50]:
        console.print(Text(f"  {row}"))
    if len(skipped) > 50:
        console.print(Text(f"  ... and {len(skipped) - 50} more"))


def print_prediction(prediction: dict[str, Any], decision: dict[str, Any], model: dict[str, Any]) -> None:
    console.print(Text(f"model {model.get('plugin')} {model.get('version')} ({model.get('path')})", style="dim"))
    review = decision.get("needs_review")
    status = Text("needs review: " + str(decision.get("review_reason")), style="bold yellow") if review else Text("confident", style="bold green")
    console.print(status)
    console.print(_heads_table(prediction["heads"]))
    if prediction.get("contributions"):
        console.print(_contributions_line(prediction["contributions"]))
    console.print(Text("decision:", style="bold"))
    console.print_json(data=decision)


def _heads_table(heads: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="prediction", title_justify="left")
    for column in ("head", "kind", "result", "top labels (calibrated probability)"):
        table.add_column(column)
    for name, head in heads.items():
        ranked = sorted(head.get("probabilities", {}).items(), key=lambda item: item[1], reverse=True)[:3]
        top = ", ".join(f"{label} {p:.2f}" for label, p in ranked)
        table.add_row(Text(name), head["kind"], Text(_head_result(head)), Text(top))
    return table


def _head_result(head: dict[str, Any]) -> str:
    if head["kind"] == "regression":
        return number(head.get("value"))
    if head["kind"] == "multilabel":
        return ", ".join(head.get("labels") or []) or "(none)"
    return f"{head.get('label')} ({number(head.get('confidence'), 2)})"


def _contributions_line(contributions: dict[str, float]) -> Text:
    ranked = sorted(contributions.items(), key=lambda item: item[1], reverse=True)
    return Text("modality contributions: " + ", ".join(f"{name} {share:.0%}" for name, share in ranked))


def print_plugins(entries: list[dict[str, Any]]) -> None:
    table = Table(title="registered plugins", title_justify="left")
    for column in ("name", "version", "api", "labels", "inputs"):
        table.add_column(column)
    for entry in entries:
        if "error" in entry:
            table.add_row(Text(entry["name"]), "-", "-", Text("BROKEN: " + entry["error"], style="red"), "")
            continue
        table.add_row(
            Text(entry["name"]), entry["version"], str(entry["api_version"]),
            Text(_schema_summary(entry.get("label_schema"))), Text(_inputs_summary(entry["input_schema"])),
        )
    console.print(table)


def _schema_summary(schema: dict[str, Any] | None) -> str:
    if schema is None:
        return "(learnt from the data)"
    parts = []
    for task in schema["tasks"]:
        names = [label["name"] for label in task.get("labels", [])]
        parts.append(f"{task['name']} ({task['kind']}): {', '.join(names)}" if names else f"{task['name']} ({task['kind']})")
    return "\n".join(parts)


def _inputs_summary(inputs: dict[str, Any]) -> str:
    parts = []
    if inputs.get("image"):
        parts.append("image" + (" (required)" if inputs["image"].get("required") else ""))
    parts.extend(f"text:{field['name']}" + (" (required)" if field.get("required") else "") for field in inputs.get("texts", []))
    return ", ".join(parts)
