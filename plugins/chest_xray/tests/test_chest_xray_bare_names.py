"""Bare names (no title, label or header) leave the text; eponyms and words of care stay."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from twinlens_chest_xray import synth_text
from twinlens_chest_xray.phi_text import scrub_text
from twinlens_chest_xray.word_lists import is_eponym, is_name_word, words

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.mark.parametrize("text, names", [
    ("Discussed with the daughter, Sabine Hoffmann.", ["Sabine", "Hoffmann"]),
    ("José García Pérez presented with fever.", ["José", "García", "Pérez"]),
    ("Giulia Bianchi tolerated the procedure well.", ["Giulia", "Bianchi"]),
    ("Seen with Amélie Dubois and her husband.", ["Amélie", "Dubois"]),
    ("Wojciech Kowalczyk, 58, ex-smoker.", ["Wojciech", "Kowalczyk"]),
    ("Jan-Willem de Vries arrived by ambulance.", ["Jan-Willem", "Vries"]),
    ("Mehmet Yılmaz reports chest pain.", ["Mehmet", "Yılmaz"]),
    ("Tanaka Hiroshi has a left chest tube.", ["Tanaka", "Hiroshi"]),
    ("Nguyễn Văn Thành, known tuberculosis.", ["Nguyễn", "Thành"]),
    ("Nguye\u0302\u0303n Va\u0306n Tha\u0300nh, typed decomposed.", ["Nguy", "Tha"]),
    ("Søren Kierkegaard Nielsen, smoker.", ["Søren", "Nielsen"]),
    ("Kowalski tolerated the upright view.", ["Kowalski"]),
    ("Kowalski's lungs are hyperinflated.", ["Kowalski"]),
    ("Her son Marco came with her.", ["Marco"]),
    ("Zyx, Quentin; cough for two weeks.", ["Zyx", "Quentin"]),
    ("M. Hoffmann signed the request.", ["Hoffmann"]),
    ("MEHMET YILMAZ, PORTABLE AP CHEST.", ["MEHMET", "YILMAZ"]),
    ("Dr. Quimby Testperson called.", ["Quimby", "Testperson"]),
])
def test_bare_names_in_many_languages_are_removed(text, names) -> None:
    clean = scrub_text(text)
    for name in names:
        assert name not in clean, clean
    assert "[NAME]" in clean


@pytest.mark.parametrize("text", [
    "History of Hodgkin lymphoma, non-Hodgkin lymphoma and Parkinson's disease.",
    "Down syndrome with an endocardial cushion defect.",
    "Kerley B lines and peribronchial cuffing.",
    "Swan-Ganz catheter tip in the right pulmonary artery.",
    "No Westermark sign; no Hampton hump.",
    "Jackson-Pratt drain in the right upper quadrant.",
    "Graves disease, Crohn disease and Turner syndrome.",
    "Pancoast tumor at the left apex.",
    "Morgagni hernia at the right cardiophrenic angle.",
    "Valsalva maneuver during the exposure.",
    "Bell's palsy; Barrett esophagus.",
    "Hickman line and Foley catheter in place.",
])
def test_eponyms_are_kept(text) -> None:
    assert scrub_text(text) == text


def test_a_given_name_beside_an_eponym_is_still_a_name() -> None:
    assert scrub_text("Sarah Turner has Turner syndrome.") == "[NAME] has Turner syndrome."


@pytest.mark.parametrize("text", [
    "CLINICAL HISTORY: Chest Pain. FINDINGS: Heart Size Normal.", "PA AND LATERAL CHEST RADIOGRAPH",
    "Portable AP Chest", "IMPRESSION: No Acute Cardiopulmonary Process.", "ECG leads project over the chest.",
    "Right IJ central venous catheter tip in the SVC.", "Status post CABG with sternotomy wires.",
    "Will follow up. May represent atelectasis. Mark the site.",
])
def test_headings_acronyms_and_sentence_starts_are_kept(text) -> None:
    assert scrub_text(text) == text


def test_every_generated_report_sentence_is_kept() -> None:
    """The words of care the report generator writes (every template, filled many ways)
    come back unchanged: the name rules cost them nothing."""
    templates = [*itertools.chain.from_iterable(synth_text.POSITIVE_PHRASES.values()),
                 *itertools.chain.from_iterable(synth_text.HEDGED_PHRASES.values()),
                 *itertools.chain.from_iterable(synth_text.NEGATED_PHRASES.values()),
                 *itertools.chain.from_iterable(synth_text.HISTORY_HINTS.values()),
                 *synth_text.TERSE_REPORTS, *synth_text.GENERIC_HISTORIES]
    rng = np.random.default_rng(0)
    changed = [(sentence, scrub_text(sentence)) for template in templates for sentence in
               {synth_text._fill(template, rng) for _ in range(6)} if scrub_text(sentence) != sentence]
    assert not changed, changed


def test_the_word_lists_ship_in_the_package_in_many_languages() -> None:
    assert len(words("first_names")) > 10_000 and len(words("surnames")) > 10_000
    for name in ("José", "Jürgen", "Wojciech", "Hiroshi", "Mehmet", "Amélie", "Søren", "Thành", "Giulia"):
        assert name.casefold() in words("first_names"), name
    for name in ("García", "Hoffmann", "Kowalczyk", "Tanaka", "Yılmaz", "Dubois", "Nguyễn", "Bianchi"):
        assert name.casefold() in words("surnames"), name
    assert not (words("not_names") & (words("first_names") | words("surnames")))
    assert is_eponym("Swan-Ganz") and is_eponym("Hodgkin") and not is_eponym("Kowalczyk")
    assert is_name_word("Jan-Willem") and not is_name_word("effusion")


def test_the_name_list_builder_keeps_cased_words_of_three_letters_or_more() -> None:
    builder = _builder()
    assert builder.name_words(["Hans-Günther", "de la Cruz", "Li", "Small", "山田", "O'Brien"], {"small"}) == {
        "Hans-Günther", "Hans", "Günther", "Cruz", "O'Brien"}


def test_the_name_list_builder_reads_fakers_providers() -> None:
    builder = _builder()
    given, family = builder.provider_names("de_DE", builder.GIVEN_MARKERS), builder.provider_names("pl_PL", builder.SURNAME_MARKERS)
    assert "Jürgen" in given and "Kowalski" in family


def _builder():
    spec = importlib.util.spec_from_file_location("build_name_lists", TOOLS / "build_name_lists.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
