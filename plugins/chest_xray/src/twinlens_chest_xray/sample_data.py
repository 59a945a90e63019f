"""`make_sample_dataset`: a small generated chest X-ray + report data set.

Everything here is generated: images are drawn (synth_image), texts are written from
templates (synth_text), and every name, ID, date and phone number is a clearly fake one
planted on purpose so that the de-identification can be tested. Nothing here depicts or
describes a real person.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from twinlens_chest_xray.labels import FINDINGS, NO_FINDING, urgency_from_findings, with_no_finding
from twinlens_chest_xray.synth_image import render_radiograph
from twinlens_chest_xray.synth_text import fake_name, write_texts

MANIFEST = "manifest.jsonl"
PLANTED_PHI = "planted_phi.json"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"

PREVALENCE = {"Support Devices": 0.3, "Cardiomegaly": 0.22, "Pleural Effusion": 0.2, "Atelectasis": 0.15,
              "Pneumonia": 0.12, "Edema": 0.1, "Pneumothorax": 0.12, "Lung Lesion": 0.1, "Consolidation": 0.08,
              "Lung Opacity": 0.08, "Enlarged Cardiomediastinum": 0.08, "Pleural Other": 0.06, "Fracture": 0.1}
# Chance that a present finding shows in the pixels; otherwise it is drawn near-invisibly.
VISIBILITY = {"Support Devices": 0.9, "Cardiomegaly": 0.8, "Pleural Effusion": 0.75, "Atelectasis": 0.6,
              "Pneumonia": 0.6, "Edema": 0.7, "Pneumothorax": 0.7, "Lung Lesion": 0.7, "Consolidation": 0.75,
              "Lung Opacity": 0.7, "Enlarged Cardiomediastinum": 0.7, "Pleural Other": 0.6, "Fracture": 0.6}
OPACITY_CHILDREN = ("Pneumonia", "Consolidation", "Edema", "Atelectasis", "Lung Lesion")


def sample_truth(rng: np.random.Generator) -> list[str]:
    """True findings of one generated study, with the usual co-occurrences."""
    present = {name for name, p in PREVALENCE.items() if rng.random() < p}
    if "Cardiomegaly" in present and rng.random() < 0.3:
        present.add("Edema")
    if "Edema" in present and rng.random() < 0.4:
        present.add("Pleural Effusion")
    if "Pneumonia" in present and rng.random() < 0.6:
        present.add("Consolidation")
    if any(name in present for name in OPACITY_CHILDREN) and rng.random() < 0.8:
        present.add("Lung Opacity")
    return with_no_finding([name for name in FINDINGS if name in present])


def draw_strengths(positives: list[str], rng: np.random.Generator) -> dict[str, float]:
    strengths = {}
    for name in positives:
        if name == NO_FINDING:
            continue
        visible = rng.random() < VISIBILITY[name]
        strengths[name] = float(rng.uniform(0.6, 1.0) if visible else rng.uniform(0.0, 0.08))
    return strengths


# -- files ----------------------------------------------------------------------------------
def fake_patient(rng: np.random.Generator, index: int) -> dict[str, str]:
    first, last = fake_name(rng)
    doctor_first, doctor_last = fake_name(rng)
    birth = dt.date(1930, 1, 1) + dt.timedelta(days=int(rng.integers(0, 25000)))
    study = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3000)))
    return {"PatientName": f"{last}^{first}", "PatientID": f"FAKE-{index:06d}-{int(rng.integers(1000, 9999))}",
            "PatientBirthDate": birth.strftime("%Y%m%d"), "StudyDate": study.strftime("%Y%m%d"),
            "ReferringPhysicianName": f"{doctor_last}^{doctor_first}", "AccessionNumber": f"ACCFAKE{index:07d}",
            "InstitutionName": "Nowhere General Test Hospital", "PatientAddress": "42 Imaginary Lane, Faketown",
            "OperatorsName": f"Operator^{first}Fake"}


def make_dicom(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", modality: str = "DX",
               body_part: str | None = "CHEST", view: str | None = "PA", bits_stored: int = 12,
               rescale: tuple[float, float] | None = None, window: bool = True,
               phi: dict[str, str] | None = None, uid_seed: str | None = None) -> bytes:
    """A DICOM Part 10 file of a [0, 1] display image (1 = dense) with the given encoding."""
    top = 2**bits_stored - 1
    stored = np.rint(np.clip(pixels, 0, 1) * top).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (top - stored).astype(np.uint16)
    ds = _dicom_header(modality, body_part, view, photometric, phi or {}, uid_seed)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    slope, intercept = rescale or (1.0, 0.0)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    if window:  # the whole stored range (a MONOCHROME1 twin's mirrored centre, 2**bits - c, is the same)
        centre = (top + 1) / 2
        ds.WindowCenter, ds.WindowWidth = centre * slope + intercept, (top + 1) * slope
    ds.PixelData = stored.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _dicom_header(modality: str, body_part: str | None, view: str | None, photometric: str,
                  phi: dict[str, str], uid_seed: str | None) -> Dataset:
    def uid(*kind: str) -> str:  # deterministic for generated data sets, random otherwise
        return generate_uid(entropy_srcs=[uid_seed, *kind]) if uid_seed else generate_uid()

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = DX_IMAGE_STORAGE if modality == "DX" else CR_IMAGE_STORAGE
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    # A study's views share its study UID; each view is an image (and series) of its own.
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = uid("instance", view or "")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series", view or "")
    ds.Modality, ds.PhotometricInterpretation = modality, photometric
    if body_part:
        ds.BodyPartExamined = body_part
    if view:
        ds.ViewPosition = view
    for keyword, value in phi.items():
        setattr(ds, keyword, value)
    if phi:  # a vendor's private block holding the name again, as real files do
        block = ds.private_block(0x0011, "TWINLENS FAKE VENDOR", create=True)
        block.add_new(0x01, "LO", phi.get("PatientName", "").replace("^", " "))
    return ds


def write_png(pixels: np.ndarray, path: Path, sixteen_bit: bool) -> None:
    if sixteen_bit:
        values = np.rint(np.clip(pixels, 0, 1) * 4095).astype(np.uint16)  # 12 bits used of 16
        Image.fromarray(values).save(path)
    else:
        Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(path)


def write_image(pixels: np.ndarray, folder: Path, index: int, rng: np.random.Generator, *,
                position: str | None = None, suffix: str = "", patient: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Rotate through encodings so every loader path is exercised; return (name, planted PHI).
    `position`: the DICOM ViewPosition (default PA or AP); `suffix` ends the file name;
    `patient`: the study's patient (the views of one study name the same one)."""
    kind = index % 4
    if kind in (0, 1):
        phi = patient or fake_patient(rng, index)
        photometric = "MONOCHROME1" if kind == 1 else "MONOCHROME2"
        rescale = (1.0, -1024.0) if kind == 1 else None
        data = make_dicom(pixels, photometric=photometric, modality=("DX", "CR")[kind],
                          view=position or str(rng.choice(["PA", "AP"])),
                          rescale=rescale, phi=phi, uid_seed=f"{phi['PatientID']}")
        name = f"images/{index:05d}{suffix}.dcm"
        (folder / name).write_bytes(data)
        planted = [v for k, v in phi.items() if k not in ("StudyDate",)]
        return name, planted + [part for v in phi.values() for part in v.split("^") if len(part) > 3]
    name = f"images/{index:05d}{suffix}.png"
    write_png(pixels, folder / name, sixteen_bit=kind == 3)
    return name, []


LATERAL_ONLY = "Pleural Effusion"


def make_sample_dataset(out_dir: Path, n: int = 200, seed: int = 0, *, image_size: int = 256, views: int = 1) -> Path:
    """Write `n` generated studies under `out_dir`; return the manifest path.

    `views=2`: every study has a frontal (PA/AP) and a lateral image, and a pleural
    effusion shows on the lateral only (small effusions blunt the posterior angle a lateral
    shows before a frontal view does): the second picture carries evidence the first lacks."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, planted_all = [], set()
    for index in range(n):
        positives = sample_truth(rng)
        strengths = draw_strengths(positives, rng)
        frontal = {name: value for name, value in strengths.items() if views == 1 or name != LATERAL_ONLY}
        patient = fake_patient(rng, index) if views > 1 else None
        image, planted = write_image(render_radiograph(frontal, rng, size=image_size), out_dir, index, rng, patient=patient)
        if views > 1:
            lateral, more = write_image(render_radiograph(strengths, rng, size=image_size), out_dir, index, rng,
                                        position="LL", suffix="-lateral", patient=patient)
            image, planted = [{"path": image, "view": "frontal"}, {"path": lateral, "view": "lateral"}], planted + more
        texts = write_texts([p for p in positives if p != NO_FINDING], rng)
        planted_all.update(planted + texts.planted_phi)
        labelled = [p for p in positives if p not in texts.uncertain]
        rows.append({"id": f"gen-{seed}-{index:05d}", "image": image, "report": texts.report, "history": texts.history,
                     "findings": labelled, "uncertain": texts.uncertain, "urgency": urgency_from_findings(positives)})
    manifest = out_dir / MANIFEST
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (out_dir / PLANTED_PHI).write_text(json.dumps(sorted(planted_all), indent=0))
    (out_dir / "README.txt").write_text(_README.format(n=n, seed=seed))
    return manifest


_README = """GENERATED DATA - NOT REAL PATIENTS.
{n} synthetic chest radiograph-like images with template-written reports and histories,
made by twinlens_chest_xray.make_sample_dataset (seed {seed}). Every name, ID, date, phone
number and address in the DICOM tags and texts is fake and planted on purpose to test
de-identification; planted_phi.json lists them. Labels: manifest.jsonl ("findings" =
positive CheXpert labels, "uncertain" = labels the report hedged on, "urgency").
"""
