"""The fault table: every table derived from it covers every fault, and a row that is
incomplete or names something unknown is refused instead of falling back to a default."""

from __future__ import annotations

import dataclasses
import random

import pytest
from twinlens.contract.prediction import HeadPrediction, Prediction

from twinlens_support_ticket.decision import ACTION_TEXT, ACTIONS, SEVERITY_ORDER, decide
from twinlens_support_ticket.faults import (
    FAULT_SPECS, FAULTS, SAFETY_FAULT, FaultSpec, FaultTableError, PhotoHints, check_fault_table,
    fault_spec,
)
from twinlens_support_ticket.generate.build import ticket_words
from twinlens_support_ticket.generate.devices import VIEWS
from twinlens_support_ticket.generate.messages import FAULT_MESSAGES, fault_message
from twinlens_support_ticket.generate.plan import DEVICES_FOR, check_photo_hints, plan_ticket, severity
from twinlens_support_ticket.labels import FAULT_TASK, SEVERITIES

SPEC = fault_spec("broken_port")


def _confident(fault: str) -> Prediction:
    probabilities = {label: (0.93 if label == fault else 0.01) for label in FAULTS}
    head = HeadPrediction(task="fault", kind="multiclass", probabilities=probabilities, label=fault, confidence=0.93)
    return Prediction(heads={"fault": head}, contributions={}, inputs_present=["text"], extras={})


def test_the_label_schema_is_the_fault_table():
    assert tuple(FAULT_TASK.label_names) == FAULTS
    assert [label.description for label in FAULT_TASK.labels] == [spec.description for spec in FAULT_SPECS]
    assert all(spec.description for spec in FAULT_SPECS)


@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_is_decided_from_its_own_row(fault):
    spec = fault_spec(fault)
    decision = decide(_confident(fault))  # no severity head: the row's default severity
    assert decision["team"] == spec.team and decision["action"] == spec.action
    assert decision["severity"] == spec.default_severity
    assert spec.action in ACTION_TEXT and spec.default_severity in SEVERITY_ORDER


@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_can_be_generated(fault):
    assert DEVICES_FOR[fault] == fault_spec(fault).photo.devices
    for seed in range(40):
        plan = plan_ticket(f"T-{seed}", fault, random.Random(seed))
        assert plan.device in DEVICES_FOR[fault] and plan.view in VIEWS[plan.device]
        assert plan.severity in SEVERITIES
        subject, description = ticket_words(plan, random.Random(seed))
        assert subject or description


@pytest.mark.parametrize("fault", sorted(FAULT_MESSAGES))
def test_every_screen_message_renders(fault):
    content, severe = fault_message(fault, random.Random(1), crash_screen=True)
    assert content.title in {message.title for message in FAULT_MESSAGES[fault]} and isinstance(severe, bool)


def test_severity_without_context_cues_is_the_rows_default():
    for spec in FAULT_SPECS:
        if not spec.severity_follows_context:
            assert severity(spec.name, unusable=True, minor=True, hazard=False) == spec.default_severity
    assert severity("water_damage", unusable=False, minor=True, hazard=True) == "critical"


def test_a_row_missing_a_decision_column_cannot_be_written():
    with pytest.raises(TypeError, match="team"):
        FaultSpec(name="dead_pixel", description="Pixels stay dark.", action="repair_rma", default_severity="medium",
                  accidental=False, wording=SPEC.wording, photo=SPEC.photo)


@pytest.mark.parametrize(("change", "complaint"), [
    ({"action": "send_flowers"}, "action 'send_flowers'"),
    ({"severe_action": "send_flowers"}, "severe_action 'send_flowers'"),
    ({"default_severity": "apocalyptic"}, "default_severity 'apocalyptic'"),
    ({"photo": dataclasses.replace(SPEC.photo, overlay="glitter")}, "overlay 'glitter'"),
    ({"wording": dataclasses.replace(SPEC.wording, specific=())}, "needs specific sentences"),
])
def test_a_row_with_an_unknown_value_is_refused(change, complaint):
    bad = dataclasses.replace(SPEC, name="dead_pixel", **change)
    with pytest.raises(FaultTableError, match=complaint):
        check_fault_table((*FAULT_SPECS, bad), actions=ACTIONS, severities=SEVERITY_ORDER)


def test_a_table_without_the_safety_fault_or_with_a_name_twice_is_refused():
    without_safety = tuple(spec for spec in FAULT_SPECS if spec.name != SAFETY_FAULT)
    with pytest.raises(FaultTableError, match="safety fault"):
        check_fault_table(without_safety, actions=ACTIONS, severities=SEVERITY_ORDER)
    with pytest.raises(FaultTableError, match="listed twice"):
        check_fault_table((*FAULT_SPECS, SPEC), actions=ACTIONS, severities=SEVERITY_ORDER)
    check_fault_table(FAULT_SPECS, actions=ACTIONS, severities=SEVERITY_ORDER)  # the real one passes


def test_photo_hints_the_generator_cannot_draw_are_refused():
    toaster = dataclasses.replace(SPEC, name="burnt_toast", photo=PhotoHints(devices=("toaster",)))
    no_port = dataclasses.replace(SPEC, name="lost_strap", photo=PhotoHints(devices=("watch",),
                                                                             damage_view_by_device={"watch": "port"}))
    silent = dataclasses.replace(SPEC, name="quiet", photo=PhotoHints(devices=("phone",), screen_share=0.5))
    with pytest.raises(FaultTableError) as refused:
        check_photo_hints((toaster, no_port, silent))
    assert "no device 'toaster'" in str(refused.value)
    assert "a watch has no 'port' view" in str(refused.value)
    assert "screen_share needs messages" in str(refused.value)
    check_photo_hints(FAULT_SPECS)


def test_an_unknown_fault_label_is_an_error_not_a_default():
    with pytest.raises(FaultTableError, match="unknown fault 'dead_pixel'"):
        fault_spec("dead_pixel")
    head = HeadPrediction(task="fault", kind="multiclass", probabilities={"dead_pixel": 1.0}, label="dead_pixel",
                          confidence=1.0)
    with pytest.raises(FaultTableError):
        decide(Prediction(heads={"fault": head}, contributions={}, inputs_present=["text"], extras={}))

