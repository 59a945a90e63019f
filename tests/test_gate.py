"""The evaluation gate's checks (services/gate.py) and the figures they compare
(services/learning_metrics.py): each check passes and fails on its own numbers, and the
report says which and why."""

from __future__ import annotations

import pytest

from twinlens.contract.errors import InputError
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.services import gate
from twinlens.services.learning_metrics import calibration_error, figures, percentile
from twinlens.settings import Settings

SCHEMA = LabelSchema(tasks=(Task(name="fault", kind="multiclass", labels=(Label(name="a"), Label(name="b"), Label(name="c"))),))


def _figures(f1: float, recall: dict[str, float], ece: float = 0.05, p95: float = 10.0) -> dict:
    return {"tasks": {"fault": {"n": 30, "accuracy": f1, "macro_f1": f1, "ece": ece, "recall": recall,
                                "support": {label: 10 for label in recall}}},
            "latency_ms": {"p50": p95 / 2, "p95": p95}}


CHAMPION = _figures(0.70, {"a": 0.7, "b": 0.7, "c": 0.7})
LOOSE = gate.GateThresholds(min_metric=0.5, min_delta=0.01, max_recall_drop=0.1, max_ece=0.1, max_latency_factor=1.5)


def _by_name(checks: list[gate.Check]) -> dict[str, gate.Check]:
    return {check.name: check for check in checks}


def test_a_better_candidate_passes_every_check():
    checks = gate.run_checks(_figures(0.80, {"a": 0.8, "b": 0.75, "c": 0.65}), CHAMPION, LOOSE)
    assert gate.verdict(checks), gate.failures(checks)
    names = set(_by_name(checks))
    assert names == {"macro_f1_floor", "macro_f1_vs_champion", "recall[a]", "recall[b]", "recall[c]", "ece", "latency_p95"}


WEAK_CHAMPION = _figures(0.40, {"a": 0.7, "b": 0.7, "c": 0.7})


@pytest.mark.parametrize("candidate, failing, words", [
    (_figures(0.45, {"a": 0.7, "b": 0.7, "c": 0.7}), "macro_f1_floor", "< the floor 0.5000"),  # vs WEAK_CHAMPION
    (_figures(0.705, {"a": 0.7, "b": 0.7, "c": 0.7}), "macro_f1_vs_champion", "+ min delta 0.0100 = 0.7100"),
    (_figures(0.90, {"a": 0.95, "b": 0.95, "c": 0.55}), "recall[c]", "drop 0.1500 > tolerance 0.1000"),
    (_figures(0.90, {"a": 0.8, "b": 0.8, "c": 0.8}, ece=0.2), "ece", "ECE 0.2000 > the ceiling 0.1000"),
    (_figures(0.90, {"a": 0.8, "b": 0.8, "c": 0.8}, p95=16.0), "latency_p95", "x 1.5 = 15.00 ms"),
])
def test_each_check_fails_on_its_own_numbers(candidate, failing, words):
    champion = WEAK_CHAMPION if failing == "macro_f1_floor" else CHAMPION
    checks = _by_name(gate.run_checks(candidate, champion, LOOSE))
    assert not gate.verdict(list(checks.values()))
    assert [name for name, check in checks.items() if not check.passed] == [failing]
    assert words in checks[failing].detail, checks[failing].detail


def test_without_a_champion_only_the_absolute_checks_decide():
    checks = _by_name(gate.run_checks(_figures(0.6, {"a": 0.6, "b": 0.6, "c": 0.6}), None, LOOSE))
    assert gate.verdict(list(checks.values()))
    assert "no champion" in checks["macro_f1_vs_champion"].detail and "no champion" in checks["class_recall"].detail


def test_a_class_missing_from_the_holdout_has_no_recall_to_lose():
    champion = _figures(0.7, {"a": 0.7, "b": 0.7, "c": 0.9})
    champion["tasks"]["fault"]["support"]["c"] = 0
    checks = _by_name(gate.run_checks(_figures(0.8, {"a": 0.8, "b": 0.8, "c": 0.0}), champion, LOOSE))
    assert "recall[c]" not in checks and gate.verdict(list(checks.values()))


def test_thresholds_come_from_settings_and_requests_override_them():
    settings = Settings(gate_min_delta=0.02, gate_max_ece=0.3, gate_primary_metric="accuracy")
    thresholds = gate.GateThresholds.from_settings(settings, {"max_ece": 0.05, "task": None})
    assert (thresholds.min_delta, thresholds.max_ece, thresholds.primary_metric) == (0.02, 0.05, "accuracy")
    with pytest.raises(InputError):
        gate.GateThresholds.from_settings(settings, {"min_deltaa": 0.1})
    with pytest.raises(InputError):
        gate.GateThresholds.from_settings(settings, {"primary_metric": "auroc"})


def test_a_candidate_without_figures_for_the_gate_task_fails():
    checks = gate.run_checks({"tasks": {}}, CHAMPION, LOOSE)
    assert not gate.verdict(checks) and checks[0].name == "gate_task"


def test_figures_from_predictions():
    heads = [{"fault": {"label": label, "confidence": conf}} for label, conf in
             [("a", 0.9), ("a", 0.8), ("b", 0.6), ("c", 0.7), ("c", 0.9)]]
    truths = [{"fault": "a"}, {"fault": "b"}, {"fault": "b"}, {"fault": "c"}, {}]
    result = figures(SCHEMA, heads, truths, [5.0, 1.0, 2.0, 3.0, 4.0])
    fault = result["tasks"]["fault"]
    assert fault["n"] == 4 and fault["accuracy"] == 0.75
    assert fault["recall"] == {"a": 1.0, "b": 0.5, "c": 1.0} and fault["support"] == {"a": 1, "b": 2, "c": 1}
    # F1: a = 2*(0.5*1)/(1.5) = 2/3; b = 2*(1*0.5)/1.5 = 2/3; c = 1
    assert fault["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert result["latency_ms"] == {"p50": 3.0, "p95": 5.0}
    assert percentile([], 95) is None


def test_calibration_error_of_perfectly_calibrated_and_overconfident_predictions():
    assert calibration_error([0.5, 0.5], [True, False]) == pytest.approx(0.0)
    assert calibration_error([0.95, 0.95], [False, False]) == pytest.approx(0.95)
