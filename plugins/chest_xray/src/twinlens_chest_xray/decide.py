"""Model outputs -> the triage decision: findings over per-finding thresholds, urgency
from the urgency head raised (never lowered) by explicit rules whose reasons are reported,
and `needs_review` whenever a finding sits in the uncertain band or the input had doubts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twinlens.contract.decision import DecisionBase
from twinlens.contract.prediction import Prediction
from twinlens_chest_xray.labels import (CRITICAL_FINDINGS, FINDINGS, FINDINGS_TASK, URGENCY_RANK, URGENCY_TASK,
                                        URGENT_FINDINGS)

INTENDED_USE = ("Research use only. Not a medical device: not for diagnosis, triage or any clinical decision. "
                "Outputs must not replace review of the images and report by a qualified clinician.")
# Report phrases that make a study critical whatever the model says.
CRITICAL_REPORT_PHRASES = ("tension pneumothorax", "mediastinal shift", "free air", "pneumoperitoneum",
                           "malpositioned endotracheal", "right mainstem intubation", "esophageal intubation")


class DecisionPolicy(BaseModel):
    """Thresholds and review rules; load a JSON file of these fields to change them."""

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, float] = Field(default_factory=lambda: {name: 0.5 for name in FINDINGS})
    # A finding whose probability is within `band` of its threshold is uncertain.
    band: float = 0.15
    # The urgency head's top probability below this asks for review.
    min_urgency_confidence: float = 0.5
    review_without_image: bool = True

    @field_validator("thresholds")
    @classmethod
    def _known_findings(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(FINDINGS)
        if unknown:
            raise ValueError(f"unknown findings in thresholds: {sorted(unknown)}")
        if any(not 0.0 < t < 1.0 for t in value.values()):
            raise ValueError("thresholds must lie strictly between 0 and 1")
        return {**{name: 0.5 for name in FINDINGS}, **value}

    @classmethod
    def from_file(cls, path: str | Path) -> "DecisionPolicy":
        return cls.model_validate(json.loads(Path(path).read_text()))


class FindingRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    finding: str
    probability: float
    threshold: float
    present: bool = Field(description="probability >= threshold")
    uncertain: bool = Field(description="within the policy's band of the threshold: review it")


class ChestXrayDecision(DecisionBase):
    """What `decide` returns for a chest X-ray study (research use only)."""

    intended_use: str
    model_version: str | None
    plugin_version: str
    findings: list[FindingRow]
    positive_findings: list[str]
    urgency: str = Field(description="routine, urgent or critical; raised, never lowered, by the rules")
    urgency_reasons: list[str]
    input_doubts: list[str]
    report_findings: dict[str, Any] = Field(description="What the report text itself says, per finding")


def decide(prediction: Prediction, policy: DecisionPolicy, plugin_version: str) -> dict[str, Any]:
    extras = prediction.extras or {}
    findings = _findings(prediction, policy)
    urgency, reasons = _urgency(prediction, findings, extras)
    review = _review_reasons(prediction, findings, policy, extras)
    positive = [f["finding"] for f in findings if f["present"]]
    return {
        "intended_use": INTENDED_USE,
        "model_version": prediction.model_version,
        "plugin_version": plugin_version,
        "findings": findings,
        "positive_findings": positive,
        "urgency": urgency,
        "urgency_reasons": reasons,
        "needs_review": bool(review),
        **({"review_reason": "; ".join(review)} if review else {}),
        "input_doubts": list(extras.get("input_doubts", [])),
        "report_findings": extras.get("report_findings", {}),
    }


def _findings(prediction: Prediction, policy: DecisionPolicy) -> list[dict[str, Any]]:
    head = prediction.heads.get(FINDINGS_TASK)
    if head is None:
        return []
    rows = []
    for name in FINDINGS:
        p = float(head.probabilities.get(name, 0.0))
        threshold = policy.thresholds[name]
        rows.append({"finding": name, "probability": round(p, 4), "threshold": threshold, "present": p >= threshold,
                     "uncertain": abs(p - threshold) < policy.band})
    return rows


def _urgency(prediction: Prediction, findings: list[dict[str, Any]], extras: dict[str, Any]) -> tuple[str, list[str]]:
    candidates: list[tuple[str, str]] = []
    head = prediction.heads.get(URGENCY_TASK)
    if head is not None and head.label:
        candidates.append((head.label, f"urgency model: {head.label} (p={head.confidence:.2f})"))
    by_name = {f["finding"]: f for f in findings}
    for name in CRITICAL_FINDINGS + URGENT_FINDINGS:
        finding = by_name.get(name)
        if finding and finding["present"]:
            level = "critical" if name in CRITICAL_FINDINGS else "urgent"
            candidates.append((level, f"likely {name.lower()} (p={finding['probability']:.2f} >= "
                                      f"{finding['threshold']:.2f}) is {level}"))
    candidates += _report_rules(extras)
    if not candidates:
        return "routine", ["no urgency head and no rule fired"]
    level = max((c[0] for c in candidates), key=URGENCY_RANK.__getitem__)
    # Reasons for the chosen level first, then the rest for context.
    ordered = [r for lvl, r in candidates if lvl == level] + [r for lvl, r in candidates if lvl != level]
    return level, ordered


def _report_rules(extras: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's own words: a stated (not negated, not hedged) critical finding."""
    rules = []
    stated = extras.get("report_findings", {})
    for name in CRITICAL_FINDINGS:
        if stated.get(name) == 1:
            rules.append(("critical", f"the report states {name.lower()} (not negated or hedged)"))
    for phrase in extras.get("report_critical_phrases", []):
        rules.append(("critical", f"the report states {phrase!r}"))
    return rules


def _review_reasons(prediction: Prediction, findings: list[dict[str, Any]], policy: DecisionPolicy,
                    extras: dict[str, Any]) -> list[str]:
    reasons = [f"{f['finding']} p={f['probability']:.2f} is within {policy.band:.2f} of its threshold "
               f"{f['threshold']:.2f}" for f in findings if f["uncertain"]]
    reasons += [f"input: {doubt}" for doubt in extras.get("input_doubts", [])]
    head = prediction.heads.get(URGENCY_TASK)
    if head is not None and head.confidence is not None and head.confidence < policy.min_urgency_confidence:
        reasons.append(f"urgency model is unsure (top p={head.confidence:.2f})")
    if policy.review_without_image and prediction.inputs_present and "image" not in prediction.inputs_present:
        reasons.append("no image: decided from text alone")
    if prediction.zero_shot:
        reasons.append("zero-shot model: not trained on labelled data")
    return reasons
