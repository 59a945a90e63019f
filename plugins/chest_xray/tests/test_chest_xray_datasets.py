"""Readers: generic manifest, CheXpert CSV, MIMIC-CXR layout; bad rows; uncertain policy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twinlens.contract.errors import DatasetError
from twinlens.contract.plugin import DatasetOptions
from twinlens_chest_xray import ChestXrayPlugin
from twinlens_chest_xray.labels import FINDINGS
from twinlens_chest_xray.sample_data import make_dicom


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(path)


def _write_manifest(folder: Path, rows: list[str]) -> Path:
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_manifest_rows_become_samples(tmp_path, plugin, chest_pixels) -> None:
    _png(tmp_path / "a.png", chest_pixels)
    path = _write_manifest(tmp_path, [
        json.dumps({"id": "a", "image": "a.png", "report": "FINDINGS: Small left effusion. Possible pneumonia.",
                    "findings": ["Pleural Effusion"], "uncertain": ["Pneumonia"]}),
        json.dumps({"id": "b", "report": "IMPRESSION: Normal.", "findings": {"Pneumothorax": 0, "Cardiomegaly": -1}}),
    ])
    dataset = plugin.read_dataset(path)
    first, second = dataset.samples
    assert first.image is not None and first.labels == {"findings": ["Pleural Effusion"], "urgency": "urgent"}
    assert first.meta["uncertain"]["findings"] == ["No Finding", "Pneumonia"]
    assert second.image is None and second.labels["urgency"] == "routine"
    assert second.meta["uncertain"]["findings"] == ["No Finding", "Cardiomegaly"]
    assert first.texts["report"].startswith("FINDINGS:")  # cleaned text for the model


def test_all_bad_rows_are_reported_with_line_numbers(tmp_path, plugin, chest_pixels) -> None:
    _png(tmp_path / "ok.png", chest_pixels)
    Image.new("RGB", (300, 300), (200, 30, 30)).save(tmp_path / "red.png")
    path = _write_manifest(tmp_path, [
        json.dumps({"image": "ok.png", "findings": ["Edema"]}),
        "{not json",
        json.dumps({"image": "ok.png", "findings": ["Broken Leg"]}),
        json.dumps({"image": "missing.png", "findings": []}),
        json.dumps({"image": "red.png", "findings": []}),
        json.dumps({"report": "x", "findings": [], "urgency": "soon"}),
    ])
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(path)
    lines = {(row.line, row.field) for row in caught.value.rows}
    assert lines == {(2, "json"), (3, "findings"), (4, "image"), (5, "image"), (6, "urgency")}
    assert "colour" in str(caught.value)
    kept = plugin.read_dataset(path, DatasetOptions(skip_bad_rows=True))
    assert len(kept.samples) == 1 and len(kept.skipped) == 5


def test_chexpert_csv_layout(tmp_path, plugin, chest_pixels) -> None:
    root = tmp_path / "CheXpert-v1.0-small"
    relative = "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    _png(tmp_path / relative, chest_pixels)
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS]
    values = {"Path": relative, "Sex": "Female", "Age": "68", "Frontal/Lateral": "Frontal", "AP/PA": "AP",
              **{name: "" for name in FINDINGS}, "Cardiomegaly": "1.0", "Edema": "-1.0", "Pneumothorax": "0.0",
              "Support Devices": "1.0"}
    bad = {**values, "Fracture": "maybe"}
    root.mkdir(parents=True, exist_ok=True)
    with (root / "train.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows([values, bad])
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(root / "train.csv")
    assert [(r.line, r.field) for r in caught.value.rows] == [(3, "Fracture")]
    sample = plugin.read_dataset(root / "train.csv", DatasetOptions(skip_bad_rows=True)).samples[0]
    assert sample.labels["findings"] == ["Cardiomegaly", "Support Devices"]
    assert sample.meta["uncertain"]["findings"] == ["No Finding", "Edema"]
    assert sample.meta["sex"] == "Female" and sample.meta["ap_pa"] == "AP"
    assert sample.meta["group"] == "patient00001"  # validation splits keep a patient on one side


def _mimic(tmp_path: Path, chest_pixels: np.ndarray, report: str) -> Path:
    study = tmp_path / "files" / "p10" / "p10000032" / "s50414267"
    study.mkdir(parents=True)
    (study / "02aa804e.dcm").write_bytes(make_dicom(chest_pixels, view="PA"))
    (study.parent / "s50414267.txt").write_text(report)
    return tmp_path


def test_mimic_layout_labels_reports_with_the_labeller(tmp_path, plugin, chest_pixels) -> None:
    root = _mimic(tmp_path, chest_pixels, "FINDINGS: Small right apical pneumothorax. No effusion.\n"
                                          "IMPRESSION: Pneumothorax. Cannot exclude pneumonia.")
    sample = plugin.read_dataset(root).samples[0]
    assert sample.labels == {"findings": ["Pneumothorax"], "urgency": "critical"}
    assert "Pneumonia" in sample.meta["uncertain"]["findings"]
    assert sample.meta["labels_from"] == "report labeller" and sample.image is not None
    assert sample.meta["group"] == "10000032"


def test_mimic_layout_prefers_the_label_csv(tmp_path, plugin, chest_pixels) -> None:
    root = _mimic(tmp_path, chest_pixels, "FINDINGS: Small right apical pneumothorax.")
    with (root / "mimic-cxr-2.0.0-chexpert.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["subject_id", "study_id", *FINDINGS])
        writer.writeheader()
        writer.writerow({"subject_id": "10000032", "study_id": "50414267", **{n: "" for n in FINDINGS}, "Atelectasis": "1.0"})
    sample = plugin.read_dataset(root).samples[0]
    assert sample.labels["findings"] == ["Atelectasis"] and sample.meta["labels_from"] == "csv"


@pytest.mark.parametrize("policy,positives,uncertain", [
    ("ignore", ["Pleural Effusion"], ["No Finding", "Pneumonia"]),
    ("positive", ["Pneumonia", "Pleural Effusion"], []),
    ("negative", ["Pleural Effusion"], []),
])
def test_uncertain_policy(tmp_path, chest_pixels, policy, positives, uncertain) -> None:
    _png(tmp_path / "a.png", chest_pixels)
    path = _write_manifest(tmp_path, [json.dumps({"image": "a.png", "findings": ["Pleural Effusion"],
                                                  "uncertain": ["Pneumonia"]})])
    sample = ChestXrayPlugin(uncertain_policy=policy).read_dataset(path).samples[0]
    assert sample.labels["findings"] == positives and sample.meta["uncertain"]["findings"] == uncertain


def test_generated_dataset_reads_back_and_is_documented(tmp_path, plugin) -> None:
    manifest = plugin.make_sample_dataset(tmp_path, n=16, seed=2)
    assert "GENERATED DATA - NOT REAL PATIENTS" in (tmp_path / "README.txt").read_text()
    dataset = plugin.read_dataset(manifest)
    kinds = {s.meta.get("input_doubts") is not None for s in dataset.samples}
    assert len(dataset.samples) == 16 and kinds == {True}
    suffixes = {Path(json.loads(line)["image"]).suffix for line in manifest.read_text().splitlines()}
    assert suffixes == {".dcm", ".png"}
    assert all(s.image.mode == "L" for s in dataset.samples)
