"""De-identification: planted PHI in DICOM tags and texts never survives sanitize/prepare."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
from PIL import Image, PngImagePlugin
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from twinlens.contract.plugin import RawInput
from twinlens_chest_xray.deid import METHOD, Deidentifier, deidentify_dicom_bytes
from twinlens_chest_xray.sample_data import PLANTED_PHI, make_dicom

# Clearly fake identifiers planted in test files; none may survive de-identification.
PLANTED = {
    "PatientName": "Fakename^Zorblax",
    "PatientID": "FAKEID-998877",
    "PatientBirthDate": "19610314",
    "PatientAddress": "42 Imaginary Lane, Faketown",
    "PatientTelephoneNumbers": "555-0199-FAKE",
    "OtherPatientIDs": "OTHERFAKE-55",
    "ReferringPhysicianName": "Placeholder^Quimby",
    "PerformingPhysicianName": "Mockingham^Ottoline",
    "OperatorsName": "Dummington^Barnaby",
    "AccessionNumber": "ACCFAKE0042",
    "InstitutionName": "Nowhere General Test Hospital",
    "InstitutionAddress": "1 Fictional Road, Nowhereville",
    "StationName": "FAKESTATION7",
    "StudyDescription": "CHEST for Zorblax Fakename",
    "StudyID": "STUDYFAKE9",
    "StudyDate": "20210505",
    "SeriesDate": "20210505",
}


REPORT = ("INDICATION: Zorblax Fakename, MRN 00482913, dyspnea.\nFINDINGS: Small right pleural effusion. "
          "No pneumothorax.\nIMPRESSION: Small effusion. Discussed with Dr. Quimby Placeholder at (555) 555-0142 "
          "on 03/04/2021.")
HISTORY = "Patient Ottoline Mockingham, accession ACC-99812, lives at 12 Nowhere Street, Faketown."
TEXT_PHI = ["Zorblax", "Fakename", "00482913", "Quimby", "Placeholder", "555-0142", "03/04/2021", "Ottoline",
            "Mockingham", "ACC-99812", "Nowhere Street"]


def _phi_dicom(pixels: np.ndarray) -> bytes:
    raw = make_dicom(pixels, modality="DX", phi=PLANTED)
    ds = pydicom.dcmread(io.BytesIO(raw))
    request = Dataset()  # identity nested inside a sequence
    request.RequestingPhysician = "Nonesuch^Grizelda"
    request.RequestedProcedureDescription = "Chest for Thaddeus Examplesmith"
    ds.RequestAttributesSequence = Sequence([request])
    view = Dataset()  # a harmless code sequence that must survive
    view.CodeValue, view.CodingSchemeDesignator, view.CodeMeaning = "R-10214", "SRT", "postero-anterior"
    ds.ViewCodeSequence = Sequence([view])
    ds.add_new(0x00211010, "LO", "Private Examplesmith Thaddeus")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _all_planted() -> list[str]:
    values = [v for k, v in PLANTED.items() if k not in ("StudyDate", "SeriesDate")]
    parts = [p for v in values for p in v.replace("^", " ").replace(",", " ").split() if len(p) > 3 and p != "CHEST"]
    return values + parts + ["Grizelda", "Nonesuch", "Thaddeus", "Examplesmith"]


def _assert_absent(blob: bytes | str, planted: list[str]) -> None:
    haystack = blob.decode("latin-1") if isinstance(blob, bytes) else blob
    for value in planted:
        assert value.lower() not in haystack.lower(), value


def test_dicom_tags_are_deidentified(chest_pixels) -> None:
    original = _phi_dicom(chest_pixels)
    for value in ("Zorblax", "Grizelda", "Thaddeus"):
        assert value.encode() in original  # the test file really carries them
    clean = deidentify_dicom_bytes(original)
    _assert_absent(clean, _all_planted())
    ds = pydicom.dcmread(io.BytesIO(clean))
    assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod == METHOD
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert ds.ViewCodeSequence[0].CodeMeaning == "postero-anterior"
    assert ds.Modality == "DX" and ds.BodyPartExamined == "CHEST"
    assert not any(element.tag.is_private for element in ds.iterall())


def test_uids_replaced_dates_shifted_pixels_kept(chest_pixels) -> None:
    original = pydicom.dcmread(io.BytesIO(_phi_dicom(chest_pixels)))
    clean = pydicom.dcmread(io.BytesIO(deidentify_dicom_bytes(_phi_dicom(chest_pixels))))
    assert clean.SOPInstanceUID != original.SOPInstanceUID
    assert clean.StudyInstanceUID != original.StudyInstanceUID
    assert clean.file_meta.MediaStorageSOPInstanceUID == clean.SOPInstanceUID
    assert clean.SOPClassUID == original.SOPClassUID
    assert clean.StudyDate != original.StudyDate and clean.StudyDate == clean.SeriesDate  # one shift per patient
    assert clean.LongitudinalTemporalInformationModified == "MODIFIED"
    assert not clean.get("PatientBirthDate")
    assert np.array_equal(clean.pixel_array, original.pixel_array)


def test_same_secret_keeps_a_patients_studies_linked(chest_pixels) -> None:
    data = _phi_dicom(chest_pixels)
    one, two = Deidentifier(b"k" * 32), Deidentifier(b"k" * 32)
    a = pydicom.dcmread(io.BytesIO(deidentify_dicom_bytes(data, one)))
    b = pydicom.dcmread(io.BytesIO(deidentify_dicom_bytes(data, two)))
    assert a.PatientID == b.PatientID and a.StudyInstanceUID == b.StudyInstanceUID and a.StudyDate == b.StudyDate
    other = pydicom.dcmread(io.BytesIO(deidentify_dicom_bytes(data, Deidentifier(b"z" * 32))))
    assert other.PatientID != a.PatientID


def test_sanitize_cleans_dicom_texts_and_metadata(plugin, chest_pixels) -> None:
    raw = RawInput(image_bytes=_phi_dicom(chest_pixels), media_type="application/dicom",
                   texts={"report": REPORT, "history": HISTORY}, metadata={"note": "from Dr. Quimby Placeholder"})
    clean = plugin.sanitize(raw)
    _assert_absent(clean.image_bytes, _all_planted())
    _assert_absent(json.dumps([clean.texts, clean.metadata]), TEXT_PHI)
    assert "Small right pleural effusion." in clean.texts["report"]


def test_prepare_output_holds_no_planted_phi(plugin, chest_pixels) -> None:
    raw = RawInput(image_bytes=_phi_dicom(chest_pixels), media_type="application/dicom",
                   texts={"report": REPORT, "history": HISTORY})
    sample = plugin.prepare(raw)
    everything = json.dumps([sample.texts, sample.meta], default=str)
    _assert_absent(everything, _all_planted() + TEXT_PHI)
    assert sample.image is not None and sample.meta["extras"]["report_findings"]["Pleural Effusion"] == 1


def test_png_metadata_is_dropped(plugin, chest_pixels) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "Zorblax Fakename")
    out = io.BytesIO()
    Image.fromarray(np.rint(chest_pixels * 255).astype(np.uint8)).save(out, format="PNG", pnginfo=info)
    assert b"Zorblax" in out.getvalue()
    clean = plugin.sanitize(RawInput(image_bytes=out.getvalue(), media_type="image/png"))
    assert b"Zorblax" not in clean.image_bytes and clean.media_type == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(clean.image_bytes))), np.rint(chest_pixels * 255))


def test_generated_dataset_phi_never_reaches_samples(plugin, tmp_path) -> None:
    manifest = plugin.make_sample_dataset(tmp_path, n=24, seed=5)
    planted = json.loads((tmp_path / PLANTED_PHI).read_text())
    assert len(planted) > 20
    assert any(p in manifest.read_text() for p in planted)  # the raw texts do carry them
    dataset = plugin.read_dataset(manifest)
    texts = json.dumps([[s.texts, s.meta] for s in dataset.samples], default=str)
    _assert_absent(texts, [p for p in planted if len(p) > 3])
