"""PHI in text: replaced by typed placeholders, medical content left alone."""

from __future__ import annotations

from twinlens_chest_xray.phi_text import scrub_text

REPORT = """Patient: Zorblax Quenfield  MRN: 00482913  Accession #: ACC-77123
DOB 03/14/1961. Seen on January 5, 2021 and 2021-02-03. Call Dr. Hibbert Vantastic at (617) 555-0199 or pager 4471.
Lives at 42 Wallaby Crescent Way, Springfield, MA 01103. Email zq@example.org. 93-year-old male.
FINDINGS: Small left effusion measuring 2.5 cm. No pneumothorax. T4 compression deformity.
Findings discussed with Dr. A. Nguyen-Pilsner by Mrs. Oddly Plumtree on 5 Mar 2020.
Electronically signed by: Wendell Frobisher"""
PLANTED = ["Zorblax", "Quenfield", "00482913", "ACC-77123", "03/14/1961", "January 5, 2021", "2021-02-03",
           "Hibbert", "Vantastic", "555-0199", "4471", "Wallaby", "Springfield", "01103", "zq@example.org",
           "93-year-old", "Nguyen", "Pilsner", "Oddly", "Plumtree", "5 Mar 2020", "Wendell", "Frobisher"]


def test_planted_phi_is_gone() -> None:
    clean = scrub_text(REPORT)
    for planted in PLANTED:
        assert planted not in clean, planted


def test_placeholders_are_typed() -> None:
    clean = scrub_text(REPORT)
    for placeholder in ("[NAME]", "[MRN]", "[ACCESSION]", "[DATE]", "[PHONE]", "[ADDRESS]", "[EMAIL]", "[AGE]"):
        assert placeholder in clean, placeholder
    assert "Dr. [NAME]" in clean


def test_medical_content_survives() -> None:
    clean = scrub_text(REPORT)
    for kept in ("Small left effusion measuring 2.5 cm.", "No pneumothorax.", "T4 compression deformity."):
        assert kept in clean


def test_ordinary_words_after_labels_are_not_names() -> None:
    assert scrub_text("Patient has a cough. Discussed with the team.") == "Patient has a cough. Discussed with the team."


def test_scrubbing_is_idempotent() -> None:
    once = scrub_text(REPORT)
    assert scrub_text(once) == once
