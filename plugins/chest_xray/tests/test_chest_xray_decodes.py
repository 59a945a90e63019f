"""A job's picture is decoded at most twice: by sanitize() in the API, which re-encodes it
without its metadata, and by prepare() in the worker, which takes its pixels. The upload
check reads headers only, and prepare() does not run sanitize() again.

Decodes are counted where PIL makes a decoder for a file format ("zip" for PNG, "jpeg"),
so any extra decode counts, whichever function does it.
"""

from __future__ import annotations

import collections
import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from twinlens.contract.images import DEFAULT_MAX_PIXELS
from twinlens.contract.plugin import RawInput
from twinlens_chest_xray.sample_data import make_dicom

MAX_DECODES_PER_JOB = 2


@pytest.fixture
def decodes(monkeypatch) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    make_decoder = Image._getdecoder

    def counting(mode, decoder_name, args, extra=()):
        if decoder_name != "raw":  # "raw" unpacks pixels already in memory (frombytes)
            counts[decoder_name] += 1
        return make_decoder(mode, decoder_name, args, extra)

    monkeypatch.setattr(Image, "_getdecoder", counting)
    return counts


def _encoded(pixels: np.ndarray, pil_format: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(out, format=pil_format)
    return out.getvalue()


def _one_job(plugin, data: bytes) -> None:
    """What the service does with one upload: check (API), sanitize (API), prepare (worker)."""
    media_type = plugin.check_image_format(data, max_pixels=DEFAULT_MAX_PIXELS)
    stored = plugin.sanitize(RawInput(image_bytes=data, media_type=media_type, texts={"report": "No effusion."}))
    sample = plugin.prepare(stored)
    assert sample.image is not None


@pytest.mark.parametrize("pil_format", ["PNG", "JPEG"])
def test_a_job_decodes_its_picture_at_most_twice(plugin, chest_pixels, decodes, pil_format) -> None:
    _one_job(plugin, _encoded(chest_pixels, pil_format))
    assert sum(decodes.values()) <= MAX_DECODES_PER_JOB, dict(decodes)


def test_the_upload_check_decodes_nothing(plugin, chest_pixels, decodes) -> None:
    assert plugin.check_image_format(_encoded(chest_pixels, "PNG"), max_pixels=DEFAULT_MAX_PIXELS) == "image/png"
    assert sum(decodes.values()) == 0


def test_prepare_of_a_stored_dicom_parses_it_once(plugin, chest_pixels, monkeypatch) -> None:
    stored = plugin.sanitize(RawInput(image_bytes=make_dicom(chest_pixels), media_type="application/dicom"))
    reads = []
    parse = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *args, **kwargs: reads.append(1) or parse(*args, **kwargs))
    assert plugin.prepare(stored).meta["image_source"] == "dicom"
    assert len(reads) == 1  # not de-identified a second time: only read for its pixels
