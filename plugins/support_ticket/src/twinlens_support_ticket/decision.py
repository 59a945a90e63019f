"""From model outputs to what support should do: action, team, severity, review flag.

Rules, in order (README "Decision rules" says the same in prose):
1. Safety first. A likely swollen battery (top label, or its probability at or above
   `safety_probability`) or a burn/smoke/fire mention in the ticket or in the text read
   from the photo escalates: action `escalate_safety`, team `product_safety`, severity
   `critical`, whatever the other signals say.
2. Otherwise the action follows the fault, adjusted by severity and product metadata
   (incomplete or faulty units inside the return window are replaced, not repaired).
3. `needs_review` is set, with a reason, when a head's confidence is below its threshold,
   when the answer is zero-shot (no trained model yet: corrections become training data),
   or when a safety escalation rests on a probability rather than the top label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twinlens.contract.prediction import HeadPrediction, Prediction

from twinlens_support_ticket.product import RETURN_WINDOW_DAYS, ProductInfo, product_from_extras
from twinlens_support_ticket.safety import hazard_mentions

ACTIONS = ("self_help_article", "replace_part", "repair_rma", "replace_unit", "escalate_safety")
ACTION_TEXT = {
    "self_help_article": "Send the matching self-help article",
    "replace_part": "Ship a replacement part",
    "repair_rma": "Open a repair (RMA) and send a prepaid label",
    "replace_unit": "Replace the unit",
    "escalate_safety": "Escalate to product safety now; tell the customer to stop using and charging the device",
}
BASE_ACTION = {
    "cracked_screen": "replace_part",
    "water_damage": "repair_rma",
    "swollen_battery": "escalate_safety",
    "broken_port": "repair_rma",
    "cosmetic_damage": "self_help_article",
    "missing_part": "replace_part",
    "software_error": "self_help_article",
    "no_visible_fault": "self_help_article",
}
TEAM = {
    "cracked_screen": "hardware_repair",
    "water_damage": "hardware_repair",
    "swollen_battery": "product_safety",
    "broken_port": "hardware_repair",
    "cosmetic_damage": "customer_care",
    "missing_part": "fulfilment",
    "software_error": "software_support",
    "no_visible_fault": "customer_care",
}
# Used when a model has no severity head (e.g. trained on fault labels only).
DEFAULT_SEVERITY = {
    "cracked_screen": "medium",
    "water_damage": "high",
    "swollen_battery": "critical",
    "broken_port": "medium",
    "cosmetic_damage": "low",
    "missing_part": "medium",
    "software_error": "medium",
    "no_visible_fault": "low",
}
SEVERITY_ORDER = ("low", "medium", "high", "critical")
# Accidental damage is covered only by an extended (accident) plan.
ACCIDENTAL = {"cracked_screen", "water_damage", "cosmetic_damage"}
DEFAULT_THRESHOLDS = {"fault": 0.6, "severity": 0.5}


@dataclass(frozen=True)
class DecisionPolicy:
    """Thresholds of the decision; a plugin instance may be built with its own."""

    review_thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    # Lower than the review threshold on purpose: missing a swollen battery costs more
    # than a safety agent's look at a false alarm.
    safety_probability: float = 0.3


def decide(prediction: Prediction, policy: DecisionPolicy | None = None) -> dict[str, Any]:
    policy = policy or DecisionPolicy()
    fault_head = prediction.heads.get("fault")
    fault = fault_head.label if fault_head else None
    severity_head = prediction.heads.get("severity")
    severity = _severity(severity_head, fault)
    product = product_from_extras(prediction.extras)
    safety = _safety_reasons(prediction, fault_head, policy)
    if safety:
        action, team, severity = "escalate_safety", "product_safety", "critical"
    else:
        action = _action(fault, severity, product)
        team = TEAM.get(fault or "", "customer_care")
    review = _review_reasons(prediction, policy, safety_from_probability=_safety_from_probability(fault_head, policy))
    return {
        "fault": fault,
        "fault_confidence": _confidence(fault_head),
        "severity": severity,
        "severity_confidence": _confidence(severity_head),
        "action": action,
        "action_text": ACTION_TEXT[action],
        "team": team,
        "coverage": _coverage(fault, product),
        "safety_escalation": bool(safety),
        "safety_reasons": safety,
        "needs_review": bool(review),
        "review_reason": "; ".join(review) if review else None,
        "zero_shot": prediction.zero_shot,
        "confidence_level": _confidence_level(prediction, fault_head, policy),
        "ocr_text": prediction.extras.get("ocr_text"),
        "explanation": _explanation(prediction, fault_head),
    }


def _confidence(head: HeadPrediction | None) -> float | None:
    return None if head is None or head.confidence is None else round(float(head.confidence), 4)


def _severity(head: HeadPrediction | None, fault: str | None) -> str:
    predicted = head.label if head is not None and head.label else DEFAULT_SEVERITY.get(fault or "", "medium")
    # A swollen battery is never less than critical, even if the severity head disagrees.
    floor = "critical" if fault == "swollen_battery" else "low"
    return max(predicted, floor, key=SEVERITY_ORDER.index)


def _safety_from_probability(head: HeadPrediction | None, policy: DecisionPolicy) -> bool:
    if head is None or head.label == "swollen_battery":
        return False
    return head.probabilities.get("swollen_battery", 0.0) >= policy.safety_probability


def _safety_reasons(prediction: Prediction, head: HeadPrediction | None, policy: DecisionPolicy) -> list[str]:
    reasons: list[str] = []
    if head is not None and head.label == "swollen_battery":
        reasons.append("the model's most likely fault is a swollen battery")
    elif _safety_from_probability(head, policy):
        probability = head.probabilities["swollen_battery"]  # type: ignore[union-attr]
        reasons.append(f"swollen battery is possible (probability {probability:.2f} >= {policy.safety_probability})")
    mentions = _mentions(prediction.extras)
    if mentions:
        reasons.append("the ticket or the photo mentions " + ", ".join(repr(word) for word in mentions))
    return reasons


def _mentions(extras: dict[str, Any]) -> list[str]:
    if "safety_mentions" in extras:  # found by prepare(); recomputed when absent
        return list(extras["safety_mentions"])
    return hazard_mentions(extras.get("ticket_text"), extras.get("ocr_text"))


def _action(fault: str | None, severity: str, product: ProductInfo) -> str:
    action = BASE_ACTION.get(fault or "", "self_help_article")
    if fault == "software_error" and severity in ("high", "critical"):
        action = "repair_rma"  # a device that will not boot is not fixed by an article
    days = product.days_since_purchase()
    in_return_window = days is not None and days <= RETURN_WINDOW_DAYS
    if in_return_window and (fault == "missing_part" or action == "repair_rma") and fault not in ACCIDENTAL:
        action = "replace_unit"  # arrived incomplete or faulty: swap it rather than repair it
    return action


def _coverage(fault: str | None, product: ProductInfo) -> str:
    status = product.warranty_status
    if status == "unknown" or fault in (None, "no_visible_fault"):
        return "unknown" if status == "unknown" else "not_needed"
    if fault in ACCIDENTAL:
        return "covered" if status == "extended" else "paid"
    return "paid" if status == "expired" else "covered"


def _review_reasons(prediction: Prediction, policy: DecisionPolicy, *, safety_from_probability: bool) -> list[str]:
    reasons: list[str] = []
    if prediction.zero_shot:
        reasons.append("zero-shot answer (no trained model yet); confirm it so it can become training data")
    for task, threshold in policy.review_thresholds.items():
        head = prediction.heads.get(task)
        if head is not None and head.confidence is not None and head.confidence < threshold:
            reasons.append(f"{task} confidence {head.confidence:.2f} is below the threshold {threshold:.2f}")
    if safety_from_probability:
        reasons.append("safety escalation rests on a possible, not the most likely, swollen battery")
    return reasons


def _confidence_level(prediction: Prediction, head: HeadPrediction | None, policy: DecisionPolicy) -> str:
    if prediction.zero_shot or head is None or head.confidence is None:
        return "low"
    threshold = policy.review_thresholds.get("fault", DEFAULT_THRESHOLDS["fault"])
    if head.confidence < threshold:
        return "low"
    return "high" if head.confidence >= (1 + threshold) / 2 else "medium"


def _explanation(prediction: Prediction, head: HeadPrediction | None) -> dict[str, Any]:
    return {
        "top_faults": [{"label": label, "probability": round(p, 4)} for label, p in head.top(3)] if head else [],
        "contributions": {name: round(share, 4) for name, share in prediction.contributions.items()},
        "inputs_present": list(prediction.inputs_present),
        "ocr_text": prediction.extras.get("ocr_text"),
    }
