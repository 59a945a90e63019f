"""Report sections, negation and uncertainty, and the rule-based labeller."""

from __future__ import annotations

import json

import pytest

from twinlens_chest_xray.reports import (NEGATIVE, POSITIVE, UNCERTAIN, aggregate, extract_mentions, label_report,
                                         model_text, parse_sections, stated_phrases)

CASES = [
    ("No pneumothorax.", {"Pneumothorax": NEGATIVE}),
    ("There is no pneumothorax.", {"Pneumothorax": NEGATIVE}),
    ("Pneumothorax is not seen.", {"Pneumothorax": NEGATIVE}),
    ("Small left pleural effusion without pneumothorax.", {"Pleural Effusion": POSITIVE, "Pneumothorax": NEGATIVE}),
    ("No pneumothorax, pleural effusion, or focal consolidation.",
     {"Pneumothorax": NEGATIVE, "Pleural Effusion": NEGATIVE, "Consolidation": NEGATIVE}),
    ("Possible small left pleural effusion.", {"Pleural Effusion": UNCERTAIN}),
    ("Cannot exclude pneumonia.", {"Pneumonia": UNCERTAIN}),
    ("Pneumothorax cannot be excluded.", {"Pneumothorax": UNCERTAIN}),
    ("Trace right effusion is not excluded.", {"Pleural Effusion": UNCERTAIN}),
    ("Left basilar opacity, atelectasis versus pneumonia.",
     {"Lung Opacity": POSITIVE, "Atelectasis": UNCERTAIN, "Pneumonia": UNCERTAIN}),
    ("Findings concerning for pneumonia.", {"Pneumonia": UNCERTAIN}),
    ("The heart may be enlarged.", {"Cardiomegaly": UNCERTAIN}),
    ("Heart size is not enlarged.", {"Cardiomegaly": NEGATIVE}),
    ("Heart size is normal.", {"Cardiomegaly": NEGATIVE}),
    ("Moderate cardiomegaly.", {"Cardiomegaly": POSITIVE}),
    ("No change in the small left pleural effusion.", {"Pleural Effusion": POSITIVE}),
    ("The effusion has resolved.", {"Pleural Effusion": NEGATIVE}),
    ("No effusion; there is a small right apical pneumothorax.", {"Pleural Effusion": NEGATIVE, "Pneumothorax": POSITIVE}),
    ("Large right pneumothorax, but no effusion.", {"Pneumothorax": POSITIVE, "Pleural Effusion": NEGATIVE}),
    ("There is no evidence of acute fracture.", {"Fracture": NEGATIVE}),
    ("Right IJ central venous catheter tip in the SVC.", {"Support Devices": POSITIVE}),
    ("The endotracheal tube has been removed.", {"Support Devices": NEGATIVE}),
    ("The lungs are clear.", {"Lung Opacity": NEGATIVE}),
]


@pytest.mark.parametrize("sentence,expected", CASES)
def test_negation_and_hedges(sentence: str, expected: dict[str, int]) -> None:
    assert aggregate(extract_mentions(sentence)) == expected


def test_sections_parsed_on_lines_and_flattened() -> None:
    text = "INDICATION: cough, fever\nFINDINGS: Small left effusion.\nimpression: Effusion."
    assert parse_sections(text) == {"indication": "cough, fever", "findings": "Small left effusion.",
                                    "impression": "Effusion."}
    flat = "CLINICAL HISTORY: Dyspnea. FINDINGS: Clear lungs. IMPRESSION: Normal chest."
    assert set(parse_sections(flat)) == {"indication", "findings", "impression"}


def test_indication_is_never_a_finding() -> None:
    report = "INDICATION: Evaluate for pneumonia and pneumothorax.\nFINDINGS: The lungs are clear.\nIMPRESSION: Normal."
    labels = label_report(report)
    assert "Pneumonia" not in labels and "Pneumothorax" not in labels
    assert labels["No Finding"] == POSITIVE


def test_no_finding_follows_positive_and_uncertain_findings() -> None:
    assert "No Finding" not in label_report("FINDINGS: Possible small right pneumothorax.")
    assert label_report("FINDINGS: Right PICC line. No pneumothorax.")["No Finding"] == POSITIVE
    assert "No Finding" not in label_report("IMPRESSION: Mild pulmonary edema.")


def test_model_text_puts_impression_first_and_drops_boilerplate() -> None:
    report = "TECHNIQUE: PA and lateral.\nCOMPARISON: None.\nFINDINGS: Small effusion.\nIMPRESSION: Effusion."
    assert model_text(report) == "IMPRESSION: Effusion. FINDINGS: Small effusion."


def test_critical_phrases_only_when_stated() -> None:
    phrases = ("tension pneumothorax",)
    assert stated_phrases("IMPRESSION: Large tension pneumothorax.", phrases) == ["tension pneumothorax"]
    assert stated_phrases("IMPRESSION: No tension pneumothorax.", phrases) == []
    assert stated_phrases("IMPRESSION: Cannot exclude tension pneumothorax.", phrases) == []


def test_generated_reports_negations_and_hedges_are_not_read_as_positive(tmp_path, plugin) -> None:
    """Over a generated corpus: every finding the labeller calls positive is truly present
    (negated and hedged sentences never become positives), and every hedge is uncertain."""
    manifest = plugin.make_sample_dataset(tmp_path, n=120, seed=3)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    negated_checked = 0
    for row in rows:
        labels = label_report(row["report"])
        truth = set(row["findings"]) | set(row["uncertain"])
        false_positives = [n for n, v in labels.items() if v == POSITIVE and n not in truth and n != "No Finding"]
        assert not false_positives, (row["report"], false_positives)
        for name in row["uncertain"]:
            assert labels.get(name) == UNCERTAIN, (row["report"], name)
        negated_checked += sum(1 for v in labels.values() if v == NEGATIVE)
    assert negated_checked > 100  # the corpus really exercises negations
