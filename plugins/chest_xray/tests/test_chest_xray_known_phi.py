"""Known-PHI cross-scrub: the names, IDs, dates and addresses a study's DICOM header holds
leave every text of that study (sanitize, prepare, data sets), however the text writes them."""

from __future__ import annotations

import io
import json
import string

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from twinlens.contract.plugin import RawInput
from twinlens_chest_xray.known_phi import KnownPhi, known_phi_from_dicom
from twinlens_chest_xray.phi_text import scrub_text
from twinlens_chest_xray.sample_data import make_dicom
from twinlens_chest_xray.word_lists import is_common_word

HEADER = {"PatientName": "Zyx^Quentin^Rowan", "PatientID": "FK-448-2913", "AccessionNumber": "RX20240117Q",
          "PatientBirthDate": "19580217", "StudyDate": "20240311", "PatientAddress": "9 Marmalade Row, Jamtown",
          "ReferringPhysicianName": "Vandersloot^Piet", "OperatorsName": "Okonkwo^Chidinma",
          "PatientTelephoneNumbers": "555-0172", "InstitutionName": "Saint Nowhere Infirmary"}


def _dicom(pixels, header: dict[str, str]) -> bytes:
    return make_dicom(pixels, modality="DX", phi=header)


def _sanitized_report(plugin, pixels, report: str, header: dict[str, str] = HEADER) -> str:
    raw = RawInput(image_bytes=_dicom(pixels, header), media_type="application/dicom", texts={"report": report})
    return plugin.sanitize(raw).texts["report"]


@pytest.mark.parametrize("written", [
    "Quentin Zyx tolerated the exam.", "Zyx, Quentin; cough.", "ZYX QUENTIN", "quentin zyx", "Zyx Quentin Rowan",
    "Q. Zyx", "Q. R. Zyx", "Zyx Q", "Zyx's film", "Mr Zyx agreed", "Rowan came alone", "Quentin-Zyx",
])
def test_the_headers_name_goes_in_any_order_and_case(plugin, chest_pixels, written) -> None:
    clean = _sanitized_report(plugin, chest_pixels, f"FINDINGS: Small effusion. {written}")
    for part in ("Quentin", "Zyx", "Rowan"):
        assert part.casefold() not in clean.casefold(), clean
    assert "Small effusion." in clean


@pytest.mark.parametrize("written", ["Thistlewood M", "M. I. Thistlewood", "M.I. Thistlewood", "Thistlewood, M.I."])
def test_initials_beside_the_name_go_with_it(written) -> None:
    known = _known({"PatientName": "Thistlewood^Maren^Ilse"})
    assert scrub_text(f"Frontal view of {written}, postoperative.", known) == "Frontal view of [NAME], postoperative."


def test_a_myocardial_infarction_after_the_name_is_not_an_initial() -> None:
    known = _known({"PatientName": "Zyx^Maren"})
    assert scrub_text("Zyx MI in 2010.", known) == "[NAME] MI in 2010."


@pytest.mark.parametrize("written", ["Jürgen Müller", "Juergen Mueller", "Jurgen Muller", "MÜLLER, JÜRGEN"])
def test_names_with_and_without_accents(written) -> None:
    known = _known({"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Müller^Jürgen"})
    assert scrub_text(f"{written}: emphysema.", known) in ("[NAME] [NAME]: emphysema.", "[NAME], [NAME]: emphysema.")


def test_ideographic_and_phonetic_name_groups() -> None:
    known = _known({"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう"})
    clean = scrub_text("山田太郎様, also Tarou Yamada (やまだ): no acute process.", known)
    for part in ("山田", "太郎", "やまだ", "Tarou", "Yamada"):
        assert part not in clean, clean
    assert "no acute process" in clean


def test_a_name_part_that_is_a_common_word_goes_only_when_capitalised() -> None:
    known = _known({"PatientName": "Small^Will"})
    assert scrub_text("Will Small tolerated it; the effusion will be small.", known) == (
        "[NAME] [NAME] tolerated it; the effusion will be small.")


@pytest.mark.parametrize("written", ["FK-448-2913", "FK4482913", "fk 448 2913", "FK/448/2913", "4482913", "#FK 4482913"])
def test_identifiers_with_or_without_separators(written) -> None:
    clean = scrub_text(f"Chart {written}, pacemaker check.", _known(HEADER))
    assert "448" not in clean and "2913" not in clean, clean
    assert clean.endswith("pacemaker check.")


@pytest.mark.parametrize("written", ["rx-20240117-q", "RX 2024 0117 Q", "RX20240117Q"])
def test_accession_numbers_in_any_form(written) -> None:
    assert "2024" not in scrub_text(f"Accession {written}.", _known(HEADER))


@pytest.mark.parametrize("written", [
    "19580217", "1958-02-17", "1958/02/17", "17.02.1958", "17/02/1958", "02/17/1958", "2/17/58", "17-Feb-1958",
    "17 February 1958", "February 17th, 1958", "Feb. 17, 1958", "17. Februar 1958", "17 février 1958",
    "17 de febrero de 1958", "580217", "17 February",
])
def test_the_birth_date_in_any_format(written) -> None:
    clean = scrub_text(f"Born {written}; COPD.", _known(HEADER))
    assert clean == "Born [DATE]; COPD.", clean


def test_other_dates_and_numbers_are_not_the_birth_date() -> None:
    text = "Nodule 17 mm, was 12 mm on 3 March 2019; 5 out of 6 nodes; 2/3 of the lung."
    assert scrub_text(text, _known(HEADER)) == "Nodule 17 mm, was 12 mm on [DATE]; 5 out of 6 nodes; 2/3 of the lung."


def test_address_words_and_institution_go() -> None:
    clean = scrub_text("From Jamtown, lives on Marmalade Row; seen at Saint Nowhere Infirmary.", _known(HEADER))
    for planted in ("Jamtown", "Marmalade", "Nowhere"):
        assert planted not in clean, clean


def test_every_person_in_the_header_goes_nested_sequences_included(chest_pixels) -> None:
    ds = pydicom.dcmread(io.BytesIO(_dicom(chest_pixels, HEADER)))
    request = Dataset()
    request.RequestingPhysician = "Nonesuch^Grizelda"
    ds.RequestAttributesSequence = Sequence([request])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    clean = scrub_text("Sent to Vandersloot and Grizelda; film by Chidinma.", known_phi_from_dicom(out.getvalue()))
    assert clean == "Sent to [NAME] and [NAME]; film by [NAME].", clean


def test_sanitize_cross_scrubs_history_and_metadata(plugin, chest_pixels) -> None:
    raw = RawInput(image_bytes=_dicom(chest_pixels, HEADER), media_type="application/dicom",
                   texts={"report": "No pneumothorax.", "history": "Quentin, phone 5550172, from Jamtown."},
                   metadata={"note": "re Zyx", "ward": "4B"})
    clean = plugin.sanitize(raw)
    everything = json.dumps([clean.texts, clean.metadata])
    for planted in ("Quentin", "5550172", "Jamtown", "Zyx"):
        assert planted not in everything, everything
    assert clean.metadata["ward"] == "4B" and clean.texts["report"] == "No pneumothorax."


def test_prepare_cross_scrubs_inputs_that_skipped_sanitize(plugin, chest_pixels) -> None:
    """The CLI predicts on files directly: prepare() reads the header from its one parse."""
    raw = RawInput(image_bytes=_dicom(chest_pixels, HEADER), media_type="application/dicom",
                   texts={"report": "Quentin Zyx: right pleural effusion.", "history": "Zyx, Quentin; dyspnea."})
    sample = plugin.prepare(raw)
    everything = json.dumps([sample.texts, sample.meta], default=str)
    assert "Quentin" not in everything and "Zyx" not in everything, everything
    assert sample.meta["extras"]["report_findings"]["Pleural Effusion"] == 1


def test_data_set_texts_are_cross_scrubbed_with_their_images_header(plugin, chest_pixels, tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.dcm").write_bytes(_dicom(chest_pixels, HEADER))
    row = {"id": "a", "image": "images/a.dcm", "report": "Quentin Zyx: no pneumothorax.", "findings": []}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    sample = plugin.read_dataset(tmp_path / "manifest.jsonl").samples[0]
    assert "Quentin" not in sample.texts["report"] and "Zyx" not in sample.texts["report"], sample.texts


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each "tag" it reads from garbage
def test_an_unreadable_header_holds_no_phi() -> None:
    assert not known_phi_from_dicom(b"not a dicom file at all")
    assert scrub_text("Quentin tolerated it.", KnownPhi()) == "[NAME] tolerated it."  # the bare-name rules still run


def test_a_picture_has_no_header_to_cross_scrub(plugin) -> None:
    clean = plugin.sanitize(RawInput(texts={"report": "Zyx, no effusion."}))
    assert clean.texts["report"] == "Zyx, no effusion."  # no header, no list name, no context: kept


_INVENTED = st.text(alphabet=string.ascii_lowercase + "äöüéñ", min_size=3, max_size=9).map(str.capitalize).filter(
    lambda word: not is_common_word(word))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(family=_INVENTED, given_name=_INVENTED, layout=st.sampled_from(
    ["{g} {f} tolerated the exam.", "{f}, {g}; cough.", "{F} {G}", "{g_} {f_} has a cough", "{f}'s film: {g}."]))
def test_any_header_name_leaves_the_text_whatever_it_is(family, given_name, layout) -> None:
    known = _known({"SpecificCharacterSet": "ISO_IR 192", "PatientName": f"{family}^{given_name}"})
    text = layout.format(g=given_name, f=family, G=given_name.upper(), F=family.upper(), g_=given_name.lower(),
                         f_=family.lower())
    clean = scrub_text(text, known).casefold()
    assert family.casefold() not in clean and given_name.casefold() not in clean, (text, clean)


def _known(header: dict[str, str]) -> KnownPhi:
    import numpy as np

    return known_phi_from_dicom(make_dicom(np.zeros((8, 8)), phi=header))
