"""Several photos per ticket: the generator's multi-photo tickets, the reader keeping every
image attachment (at most MAX_PHOTOS), prepare reading and OCR-ing each photo."""

from __future__ import annotations

import io
import json

import pytest

from twinlens.contract.errors import DatasetError
from twinlens.contract.plugin import RawImage, RawInput
from twinlens_support_ticket.dataset import read_export
from twinlens_support_ticket.generate.build import make_sample_dataset
from twinlens_support_ticket.plugin import SupportTicketPlugin
from twinlens_support_ticket.samples import MAX_PHOTOS


def test_multi_photo_tickets_are_read_with_every_photo(tmp_path):
    export = make_sample_dataset(tmp_path / "t", n=4, seed=2, photos=3)
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    samples = {s.id: s for s in read_export(export, ocr_photos=False, progress=False).samples}
    for row in rows:
        assert len(samples[row["ticket_id"]].images) == len(row["attachments"]) in (0, 3)
    assert any(row["attachments"] for row in rows)


def test_more_photos_than_a_ticket_takes_is_a_bad_row(tmp_path):
    export = make_sample_dataset(tmp_path / "t", n=2, seed=2, photos=MAX_PHOTOS + 1)
    with pytest.raises(DatasetError, match=f"at most {MAX_PHOTOS}"):
        read_export(export, ocr_photos=False, progress=False)


def test_prepare_reads_and_ocrs_every_photo(tmp_path, monkeypatch):
    from PIL import Image

    from twinlens_support_ticket import ocr

    photos = []
    for shade in (60, 120, 180):
        buffer = io.BytesIO()
        Image.new("RGB", (48, 48), (shade, shade, shade)).save(buffer, "PNG")
        photos.append(RawImage(buffer.getvalue(), "image/png"))
    read = []
    monkeypatch.setattr(ocr, "read_text", lambda image: read.append(image.getpixel((0, 0))[0]) or f"code {len(read)}")
    sample = SupportTicketPlugin().prepare(RawInput.of_images(photos, texts={"text": "it broke"}))
    assert [image.getpixel((0, 0))[0] for image in sample.images] == [60, 120, 180]
    assert read == [60, 120, 180]
    assert sample.texts["ocr"] == "code 1\ncode 2\ncode 3"
