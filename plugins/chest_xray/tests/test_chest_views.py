"""A chest study of a frontal and a lateral view: generated PA+lateral studies, the
manifest reader keeping both with their views, sanitize removing PHI from every image."""

from __future__ import annotations

import json

from twinlens.contract.plugin import RawImage, RawInput
from twinlens_chest_xray.plugin import ChestXrayPlugin
from twinlens_chest_xray.sample_data import make_sample_dataset


def test_generated_studies_have_both_views(tmp_path):
    manifest = make_sample_dataset(tmp_path / "s", n=4, seed=1, image_size=64, views=2)
    samples = ChestXrayPlugin().read_dataset(manifest).samples
    assert all(len(s.images) == 2 and s.views == ["frontal", "lateral"] for s in samples)


def test_every_image_is_sanitized_and_views_come_from_the_header(tmp_path):
    manifest = make_sample_dataset(tmp_path / "s", n=2, seed=1, image_size=64, views=2)
    row = json.loads(manifest.read_text().splitlines()[0])  # index 0: DICOM images with planted PHI
    images = [RawImage((manifest.parent / item["path"]).read_bytes(), "application/dicom") for item in row["image"]]
    planted = json.loads((manifest.parent / "planted_phi.json").read_text())
    assert any(name.encode() in images[1].data for name in planted)
    plugin = ChestXrayPlugin()
    clean = plugin.sanitize(RawInput.of_images(images, texts={"report": row["report"]}))
    assert len(clean.images) == 2
    for image in clean.images:
        assert not any(name.encode() in image.data for name in planted if len(name) > 5)
    sample = plugin.prepare(clean)
    assert sample.views == ["frontal", "lateral"]  # from each DICOM's ViewPosition
    assert not any("lateral view" in doubt for doubt in sample.meta["input_doubts"])


def _dicom_of_study(pixels, study_uid: str, view: str) -> bytes:
    import io

    import pydicom

    from twinlens_chest_xray.sample_data import make_dicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom(pixels, view=view)))
    ds.StudyInstanceUID = study_uid
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_lines_of_one_dicom_study_are_one_sample_with_the_header_views(tmp_path):
    """A PACS export: one line per image; the StudyInstanceUID makes them one study."""
    import numpy as np

    pixels = np.random.default_rng(0).random((64, 64))
    files = {"a-pa.dcm": ("1.2.3.4", "PA"), "a-lat.dcm": ("1.2.3.4", "LL"), "b-pa.dcm": ("1.2.3.5", "PA")}
    for name, (uid, view) in files.items():
        (tmp_path / name).write_bytes(_dicom_of_study(pixels, uid, view))
    lines = [{"id": "a1", "image": "a-pa.dcm", "report": "Small left effusion.", "findings": ["Pleural Effusion"]},
             {"id": "b1", "image": "b-pa.dcm", "report": "Clear lungs.", "findings": []},
             {"id": "a2", "image": "a-lat.dcm", "report": "Small left effusion.", "findings": ["Pleural Effusion"]}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    samples = ChestXrayPlugin().read_dataset(tmp_path / "manifest.jsonl").samples
    assert [s.id for s in samples] == ["a1", "b1"]
    study = samples[0]
    assert len(study.images) == 2 and study.views == ["frontal", "lateral"]
    assert study.texts["report"].count("Small left effusion.") == 1  # the repeated report once
    assert study.labels["findings"] == ["Pleural Effusion"] and len(samples[1].images) == 1


def test_lines_of_one_study_must_agree_on_its_labels(tmp_path):
    import pytest

    from twinlens.contract.errors import DatasetError
    from twinlens_chest_xray.sample_data import make_sample_dataset

    source = make_sample_dataset(tmp_path / "s", n=1, seed=1, image_size=64, views=2)
    row = json.loads(source.read_text().splitlines()[0])
    first, second = row["image"]
    lines = [{"id": "x", "study_id": "S1", "image": first, "findings": ["Edema"]},
             {"id": "y", "study_id": "S1", "image": second, "findings": ["Cardiomegaly"]}]
    (source.parent / "split.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    with pytest.raises(DatasetError) as raised:
        ChestXrayPlugin().read_dataset(source.parent / "split.jsonl")
    assert "line 2 is the same study as line 1 but its findings differ" in str(raised.value)


def test_one_job_is_one_study(tmp_path):
    """Views of two studies (two patients, perhaps) in one job are refused, naming the field."""
    import numpy as np
    import pytest

    from twinlens.contract.errors import InputError

    pixels = np.random.default_rng(0).random((64, 64))
    plugin = ChestXrayPlugin()
    same = [RawImage(_dicom_of_study(pixels, "1.2.3.4", view), "application/dicom") for view in ("PA", "LL")]
    assert len(plugin.sanitize(RawInput.of_images(same, texts={"report": "Clear."})).images) == 2
    mixed = [RawImage(_dicom_of_study(pixels, uid, "PA"), "application/dicom") for uid in ("1.2.3.4", "1.2.3.9")]
    with pytest.raises(InputError) as refused:
        plugin.sanitize(RawInput.of_images(mixed, texts={"report": "Clear."}))
    assert refused.value.field == "image" and "2 different studies" in refused.value.reason
