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

from pydantic import BaseModel, ConfigDict, Field

from twinlens.contract.decision import DecisionBase
from twinlens.contract.prediction import HeadPrediction, Prediction

from twinlens_support_ticket.faults import FAULT_SPECS, SAFETY_FAULT, FaultSpec, check_fault_table, fault_spec
from twinlens_support_ticket.product import RETURN_WINDOW_DAYS, ProductInfo, product_from_extras
from twinlens_support_ticket.safety import hazard_mentions

ACTION_TEXT = {
    "self_help_article": "Send the matching self-help article",
    "replace_part": "Ship a replacement part",
    "repair_rma": "Open a repair (RMA) and send a prepaid label",
    "replace_unit": "Replace the unit",
    "escalate_safety": "Escalate to product safety now; tell the customer to stop using and charging the device",
}
ACTIONS = tuple(ACTION_TEXT)
SEVERITY_ORDER = ("low", "medium", "high", "critical")
# What a model that predicts no fault at all (trained on severity only) leads to.
NO_FAULT_ACTION, NO_FAULT_TEAM, NO_FAULT_SEVERITY = "self_help_article", "customer_care", "medium"
DEFAULT_THRESHOLDS = {"fault": 0.6, "severity": 0.5}

# Each fault's action, team and default severity come from its row; refuse a row that
# names an action or severity this module does not know, before any ticket is decided.
check_fault_table(FAULT_SPECS, actions=ACTIONS, severities=SEVERITY_ORDER)


@dataclass(frozen=True)
class DecisionPolicy:
    """Thresholds of the decision; a plugin instance may be built with its own."""

    review_thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    # Lower than the review threshold on purpose: missing a swollen battery costs more
    # than a safety agent's look at a false alarm.
    safety_probability: float = 0.3


class TopFault(BaseModel):
    label: str
    probability: float


class TicketExplanation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top_faults: list[TopFault] = Field(description="The three most likely faults")
    contributions: dict[str, float] = Field(description="Share of the answer each present modality carries")
    inputs_present: list[str]
    ocr_text: str | None = Field(None, description="Text read from the photo")
    photo_contributions: dict[str, float] = Field(
        default_factory=dict, description="A ticket of several photos: each photo's share of what the photos showed")
    photo_evidence: str | None = Field(None, description="Which photo showed most, in words")


class TicketDecision(DecisionBase):
    """What `decide` returns for a support ticket."""

    fault: str | None = Field(description="The most likely fault label")
    fault_confidence: float | None
    severity: str = Field(description="low, medium, high or critical (never below the fault's floor)")
    severity_confidence: float | None
    action: str = Field(description="The next step, one of the plugin's actions")
    action_text: str = Field(description="The next step in words, for the agent")
    team: str = Field(description="The team the ticket is routed to")
    coverage: str = Field(description="covered, paid, not_needed or unknown (warranty)")
    safety_escalation: bool
    safety_reasons: list[str]
    zero_shot: bool
    confidence_level: str = Field(description="low, medium or high")
    ocr_text: str | None
    explanation: TicketExplanation


def decide(prediction: Prediction, policy: DecisionPolicy | None = None) -> dict[str, Any]:
    policy = policy or DecisionPolicy()
    fault_head = prediction.heads.get("fault")
    fault = fault_head.label if fault_head else None
    spec = fault_spec(fault) if fault is not None else None
    severity_head = prediction.heads.get("severity")
    severity = _severity(severity_head, spec)
    product = product_from_extras(prediction.extras)
    safety = _safety_reasons(prediction, fault_head, policy)
    if safety:
        action, team, severity = "escalate_safety", "product_safety", "critical"
    else:
        action = _action(spec, severity, product)
        team = spec.team if spec is not None else NO_FAULT_TEAM
    review = _review_reasons(prediction, policy, safety_from_probability=_safety_from_probability(fault_head, policy))
    return {
        "fault": fault,
        "fault_confidence": _confidence(fault_head),
        "severity": severity,
        "severity_confidence": _confidence(severity_head),
        "action": action,
        "action_text": ACTION_TEXT[action],
        "team": team,
        "coverage": _coverage(spec, product),
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


def _severity(head: HeadPrediction | None, spec: FaultSpec | None) -> str:
    default = spec.default_severity if spec is not None else NO_FAULT_SEVERITY
    predicted = head.label if head is not None and head.label else default
    # A swollen battery is never less than critical, even if the severity head disagrees.
    floor = "critical" if spec is not None and spec.name == SAFETY_FAULT else "low"
    return max(predicted, floor, key=SEVERITY_ORDER.index)


def _safety_from_probability(head: HeadPrediction | None, policy: DecisionPolicy) -> bool:
    if head is None or head.label == SAFETY_FAULT:
        return False
    return head.probabilities.get(SAFETY_FAULT, 0.0) >= policy.safety_probability


def _safety_reasons(prediction: Prediction, head: HeadPrediction | None, policy: DecisionPolicy) -> list[str]:
    reasons: list[str] = []
    if head is not None and head.label == SAFETY_FAULT:
        reasons.append("the model's most likely fault is a swollen battery")
    elif _safety_from_probability(head, policy):
        probability = head.probabilities[SAFETY_FAULT]  # type: ignore[union-attr]
        reasons.append(f"swollen battery is possible (probability {probability:.2f} >= {policy.safety_probability})")
    mentions = _mentions(prediction.extras)
    if mentions:
        reasons.append("the ticket or the photo mentions " + ", ".join(repr(word) for word in mentions))
    return reasons


def _mentions(extras: dict[str, Any]) -> list[str]:
    if "safety_mentions" in extras:  # found by prepare(); recomputed when absent
        return list(extras["safety_mentions"])
    return hazard_mentions(extras.get("ticket_text"), extras.get("ocr_text"))


def _action(spec: FaultSpec | None, severity: str, product: ProductInfo) -> str:
    if spec is None:
        return NO_FAULT_ACTION
    action = spec.action
    if spec.severe_action is not None and severity in ("high", "critical"):
        action = spec.severe_action
    days = product.days_since_purchase()
    in_return_window = days is not None and days <= RETURN_WINDOW_DAYS
    if in_return_window and (spec.replace_unit_when_new or action == "repair_rma") and not spec.accidental:
        action = "replace_unit"  # arrived incomplete or faulty: swap it rather than repair it
    return action


def _coverage(spec: FaultSpec | None, product: ProductInfo) -> str:
    status = product.warranty_status
    if status == "unknown" or spec is None or spec.shows_no_fault:
        return "unknown" if status == "unknown" else "not_needed"
    if spec.accidental:
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
        "photo_contributions": dict(prediction.image_contributions),
        "photo_evidence": photo_evidence(prediction.image_contributions, head.label if head else None),
    }


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")


def photo_evidence(shares: dict[str, float], fault: str | None) -> str | None:
    """"the second photo shows most of what points to liquid_damage": the photo whose
    removal moves the answer most, when a ticket has several."""
    if len(shares) < 2:
        return None
    name = max(shares, key=shares.get)
    position = int(name.rsplit(" ", 1)[-1]) if name.startswith("image ") else None
    photo = f"the {ORDINALS[position - 1]} photo" if position and position <= len(ORDINALS) else f"photo {name!r}"
    return f"{photo} shows most of what points to {fault}" if fault else f"{photo} carries most of the image evidence"
