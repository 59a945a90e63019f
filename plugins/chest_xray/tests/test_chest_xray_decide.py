"""decide(): thresholds, urgency rules with reasons, needs_review, notice and version."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from twinlens.contract.plugin import RawInput
from twinlens.contract.prediction import HeadPrediction, Prediction
from twinlens_chest_xray import ChestXrayPlugin
from twinlens_chest_xray.decide import INTENDED_USE, DecisionPolicy
from twinlens_chest_xray.labels import FINDINGS
from twinlens_chest_xray.plugin import report_extras


def _prediction(findings: dict[str, float] | None = None, urgency: str = "routine", confidence: float = 0.9,
                extras: dict | None = None, present=("image", "report")) -> Prediction:
    probabilities = {name: 0.02 for name in FINDINGS}
    probabilities.update(findings or {})
    others = (1 - confidence) / 2
    urgency_probs = {level: (confidence if level == urgency else others) for level in ("critical", "urgent", "routine")}
    heads = {
        "findings": HeadPrediction(task="findings", kind="multilabel", probabilities=probabilities,
                                   labels=[n for n, p in probabilities.items() if p >= 0.5]),
        "urgency": HeadPrediction(task="urgency", kind="multiclass", probabilities=urgency_probs, label=urgency,
                                  confidence=confidence),
    }
    return Prediction(heads=heads, inputs_present=list(present), model_version="cx-test-7", extras=extras or {})


@pytest.fixture()
def plugin() -> ChestXrayPlugin:
    return ChestXrayPlugin()


def test_every_result_carries_notice_and_model_version(plugin) -> None:
    result = plugin.decide(_prediction())
    assert result["intended_use"] == INTENDED_USE and "not for diagnosis" in result["intended_use"].lower()
    assert result["model_version"] == "cx-test-7" and result["plugin_version"] == plugin.version


def test_clear_normal_study_is_routine_without_review(plugin) -> None:
    result = plugin.decide(_prediction({"No Finding": 0.95}))
    assert result["urgency"] == "routine" and result["needs_review"] is False and "review_reason" not in result
    assert result["positive_findings"] == ["No Finding"]


def test_likely_pneumothorax_is_critical_with_its_reason(plugin) -> None:
    result = plugin.decide(_prediction({"Pneumothorax": 0.91}, urgency="routine"))
    assert result["urgency"] == "critical"
    assert "pneumothorax" in result["urgency_reasons"][0] and "0.91" in result["urgency_reasons"][0]


def test_likely_effusion_raises_routine_to_urgent_and_never_lowers(plugin) -> None:
    assert plugin.decide(_prediction({"Pleural Effusion": 0.8}, urgency="routine"))["urgency"] == "urgent"
    assert plugin.decide(_prediction({}, urgency="critical"))["urgency"] == "critical"


def test_finding_in_uncertain_band_needs_review(plugin) -> None:
    result = plugin.decide(_prediction({"Pneumothorax": 0.44}))
    assert result["needs_review"] is True and "Pneumothorax p=0.44" in result["review_reason"]
    assert result["urgency"] == "routine"  # below threshold: no critical rule


def test_report_stating_pneumothorax_is_critical_even_if_model_is_not(plugin) -> None:
    extras = report_extras("FINDINGS: Small left apical pneumothorax. IMPRESSION: Pneumothorax.")
    result = plugin.decide(_prediction({}, extras=extras))
    assert result["urgency"] == "critical" and "the report states pneumothorax" in result["urgency_reasons"][0]


def test_negated_or_hedged_pneumothorax_in_report_is_not_critical(plugin) -> None:
    for report in ("FINDINGS: No pneumothorax.", "IMPRESSION: Cannot exclude a small pneumothorax."):
        assert plugin.decide(_prediction({}, extras=report_extras(report)))["urgency"] == "routine"


def test_tension_phrase_in_report_is_critical(plugin) -> None:
    extras = report_extras("IMPRESSION: Large right pneumothorax with mediastinal shift.")
    reasons = plugin.decide(_prediction({}, extras=extras))["urgency_reasons"]
    assert any("mediastinal shift" in reason for reason in reasons)


def test_input_doubts_and_missing_image_ask_for_review(plugin) -> None:
    result = plugin.decide(_prediction(extras={"input_doubts": ["lateral view"]}))
    assert result["needs_review"] and "input: lateral view" in result["review_reason"]
    assert "no image" in plugin.decide(_prediction(present=("report",)))["review_reason"]


def test_unsure_urgency_head_asks_for_review(plugin) -> None:
    assert "urgency model is unsure" in plugin.decide(_prediction(confidence=0.4))["review_reason"]


def test_thresholds_are_configurable(tmp_path, monkeypatch) -> None:
    strict = ChestXrayPlugin(policy=DecisionPolicy(thresholds={"Pneumothorax": 0.95}, band=0.05))
    assert strict.decide(_prediction({"Pneumothorax": 0.91}))["urgency"] == "routine"
    policy_file = tmp_path / "policy.json"
    policy_file.write_text('{"thresholds": {"Pleural Effusion": 0.3}, "band": 0.02}')
    monkeypatch.setenv("TWINLENS_CHEST_XRAY_POLICY", str(policy_file))
    assert ChestXrayPlugin().decide(_prediction({"Pleural Effusion": 0.35}))["urgency"] == "urgent"
    with pytest.raises(ValidationError):
        DecisionPolicy(thresholds={"Broken Leg": 0.5})


def test_prepare_carries_report_reading_into_decide(plugin, chest_pixels) -> None:
    from twinlens_chest_xray.sample_data import make_dicom

    sample = plugin.prepare(RawInput(image_bytes=make_dicom(chest_pixels, view="LL"), media_type="application/dicom",
                                     texts={"report": "FINDINGS: Moderate right pneumothorax. No effusion."}))
    extras = sample.meta["extras"]
    assert extras["report_findings"] == {"Pneumothorax": 1, "Pleural Effusion": 0}
    result = plugin.decide(_prediction({}, extras=extras))
    assert result["urgency"] == "critical" and result["needs_review"]  # lateral view doubt
