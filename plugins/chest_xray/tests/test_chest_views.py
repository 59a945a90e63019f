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
