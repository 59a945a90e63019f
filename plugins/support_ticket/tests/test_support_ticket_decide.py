"""decide(): action, team, severity, coverage, safety escalation and needs_review."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from twinlens.contract.prediction import HeadPrediction, Prediction

from twinlens_support_ticket.decision import DecisionPolicy
from twinlens_support_ticket.labels import FAULTS, SEVERITIES
from twinlens_support_ticket.plugin import SupportTicketPlugin
from twinlens_support_ticket.safety import hazard_mentions


def head(task: str, labels: tuple[str, ...], top: str, confidence: float) -> HeadPrediction:
    rest = (1.0 - confidence) / (len(labels) - 1)
    probabilities = {label: (confidence if label == top else rest) for label in labels}
    return HeadPrediction(task=task, kind="multiclass", probabilities=probabilities, label=top, confidence=confidence)


def prediction(fault: str, severity: str = "medium", *, fault_p: float = 0.9, severity_p: float = 0.9,
               extras: dict | None = None, zero_shot: bool = False, probabilities: dict | None = None) -> Prediction:
    fault_head = head("fault", FAULTS, fault, fault_p)
    if probabilities:
        fault_head.probabilities.update(probabilities)
    return Prediction(
        heads={"fault": fault_head, "severity": head("severity", SEVERITIES, severity, severity_p)},
        contributions={"image": 0.6, "text": 0.3, "ocr": 0.1},
        inputs_present=["image", "text", "ocr"],
        zero_shot=zero_shot,
        extras=extras or {},
    )


@pytest.fixture
def plugin() -> SupportTicketPlugin:
    return SupportTicketPlugin()


@pytest.mark.parametrize(
    ("fault", "action", "team"),
    [
        ("cracked_screen", "replace_part", "hardware_repair"),
        ("water_damage", "repair_rma", "hardware_repair"),
        ("broken_port", "repair_rma", "hardware_repair"),
        ("cosmetic_damage", "self_help_article", "customer_care"),
        ("missing_part", "replace_part", "fulfilment"),
        ("software_error", "self_help_article", "software_support"),
        ("no_visible_fault", "self_help_article", "customer_care"),
    ],
)
def test_confident_prediction_maps_fault_to_action_and_team(plugin, fault, action, team):
    decision = plugin.decide(prediction(fault))
    assert (decision["action"], decision["team"]) == (action, team)
    assert decision["needs_review"] is False and decision["review_reason"] is None
    assert decision["safety_escalation"] is False
    assert decision["confidence_level"] == "high"
    json.dumps(decision)  # stored as JSON by the worker


def test_swollen_battery_escalates_as_critical_even_when_severity_head_says_low(plugin):
    decision = plugin.decide(prediction("swollen_battery", "low"))
    assert decision["action"] == "escalate_safety"
    assert decision["team"] == "product_safety"
    assert decision["severity"] == "critical"
    assert decision["safety_escalation"] is True
    assert "swollen battery" in decision["safety_reasons"][0]


def test_smoke_in_the_ticket_escalates_whatever_the_fault(plugin):
    extras = {"ticket_text": "Screen cracked and I saw smoke coming out of it when charging", "ocr_text": None}
    decision = plugin.decide(prediction("cosmetic_damage", "low", extras=extras))
    assert decision["action"] == "escalate_safety"
    assert decision["severity"] == "critical"
    assert decision["team"] == "product_safety"
    assert any("smoke" in reason for reason in decision["safety_reasons"])


def test_burn_mention_read_from_the_photo_escalates(plugin):
    decision = plugin.decide(prediction("software_error", extras={"ocr_text": "Warning: burning detected"}))
    assert decision["action"] == "escalate_safety"


def test_precomputed_safety_mentions_are_used(plugin):
    decision = plugin.decide(prediction("no_visible_fault", "low", extras={"safety_mentions": ["melted"]}))
    assert decision["safety_escalation"] is True and "'melted'" in decision["safety_reasons"][0]


def test_possible_swollen_battery_escalates_and_asks_for_review(plugin):
    # Top label is a cosmetic issue, but a swollen battery is still plausible.
    p = prediction("cosmetic_damage", "low", fault_p=0.62, probabilities={"swollen_battery": 0.33})
    decision = plugin.decide(p)
    assert decision["action"] == "escalate_safety" and decision["severity"] == "critical"
    assert decision["needs_review"] is True
    assert "possible, not the most likely" in decision["review_reason"]


def test_unlikely_swollen_battery_does_not_escalate(plugin):
    p = prediction("cosmetic_damage", "low", probabilities={"swollen_battery": 0.05})
    assert plugin.decide(p)["safety_escalation"] is False


def test_negated_smoke_does_not_escalate(plugin):
    extras = {"ticket_text": "Screen is cracked. No smoke or burning smell, it just looks bad."}
    decision = plugin.decide(prediction("cracked_screen", extras=extras))
    assert decision["safety_escalation"] is False
    assert decision["action"] == "replace_part"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("it started smoking while charging", ["smoking"]),
        ("There's a scorched mark near the port", ["scorched"]),
        ("no idea why. It smells burnt", ["burnt"]),
        ("no smoke, no fire", []),
        ("I didn't see any sparks", []),
        ("firmware update failed", []),
        ("the case MELTED near the port", ["melted"]),
    ],
)
def test_hazard_mentions(text, expected):
    assert hazard_mentions(text) == expected


def test_low_fault_confidence_needs_review_with_reason(plugin):
    decision = plugin.decide(prediction("broken_port", fault_p=0.41))
    assert decision["needs_review"] is True
    assert "fault confidence 0.41 is below the threshold 0.60" in decision["review_reason"]
    assert decision["confidence_level"] == "low"
    assert decision["action"] == "repair_rma"  # still proposes the action


def test_low_severity_confidence_needs_review(plugin):
    decision = plugin.decide(prediction("broken_port", severity_p=0.3))
    assert decision["needs_review"] is True and "severity confidence" in decision["review_reason"]


def test_thresholds_are_per_head_and_configurable():
    strict = SupportTicketPlugin(DecisionPolicy(review_thresholds={"fault": 0.95, "severity": 0.1}))
    decision = strict.decide(prediction("broken_port", fault_p=0.9, severity_p=0.2))
    assert decision["review_reason"] == "fault confidence 0.90 is below the threshold 0.95"


def test_zero_shot_is_marked_low_confidence_and_reviewed(plugin):
    decision = plugin.decide(prediction("cracked_screen", fault_p=0.95, zero_shot=True))
    assert decision["zero_shot"] is True
    assert decision["confidence_level"] == "low"
    assert decision["needs_review"] is True and "zero-shot" in decision["review_reason"]


def test_unusable_software_error_is_repaired_not_self_helped(plugin):
    assert plugin.decide(prediction("software_error", "high"))["action"] == "repair_rma"


def test_return_window_replaces_incomplete_or_faulty_units(plugin):
    recent = {"product": {"purchase_date": (dt.date.today() - dt.timedelta(days=5)).isoformat(), "warranty_status": "in_warranty"}}
    old = {"product": {"purchase_date": "2020-01-01", "warranty_status": "expired"}}
    assert plugin.decide(prediction("missing_part", extras=recent))["action"] == "replace_unit"
    assert plugin.decide(prediction("broken_port", extras=recent))["action"] == "replace_unit"
    # Accidental damage is not swapped for free, even in the first days.
    assert plugin.decide(prediction("cracked_screen", extras=recent))["action"] == "replace_part"
    assert plugin.decide(prediction("missing_part", extras=old))["action"] == "replace_part"


@pytest.mark.parametrize(
    ("fault", "warranty", "coverage"),
    [
        ("broken_port", "in_warranty", "covered"),
        ("broken_port", "expired", "paid"),
        ("cracked_screen", "in_warranty", "paid"),
        ("cracked_screen", "extended", "covered"),
        ("no_visible_fault", "in_warranty", "not_needed"),
        ("broken_port", "unknown", "unknown"),
    ],
)
def test_coverage(plugin, fault, warranty, coverage):
    extras = {"product": {"warranty_status": warranty}}
    assert plugin.decide(prediction(fault, extras=extras))["coverage"] == coverage


def test_model_without_severity_head_uses_fault_default(plugin):
    p = prediction("water_damage")
    del p.heads["severity"]
    decision = plugin.decide(p)
    assert decision["severity"] == "high" and decision["severity_confidence"] is None


def test_explanation_carries_ocr_text_and_contributions(plugin):
    decision = plugin.decide(prediction("software_error", extras={"ocr_text": "System Error\nCode E-2043"}))
    assert decision["ocr_text"] == "System Error\nCode E-2043"
    assert decision["explanation"]["ocr_text"] == "System Error\nCode E-2043"
    assert decision["explanation"]["contributions"] == {"image": 0.6, "text": 0.3, "ocr": 0.1}
    assert decision["explanation"]["top_faults"][0]["label"] == "software_error"
