"""The input validity gate: refuse what is not a chest radiograph, doubt what is odd."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from twinlens.contract.errors import InputError
from twinlens_chest_xray.imaging import load_radiograph
from twinlens_chest_xray.sample_data import make_dicom


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_colour_photo_is_refused_with_a_reason() -> None:
    rng = np.random.default_rng(0)
    photo = np.zeros((300, 400, 3), dtype=np.uint8)
    photo[..., 0] = rng.integers(120, 255, (300, 400))  # a reddish, green and blue scene
    photo[:150, :, 1] = 200
    photo[150:, :, 2] = 220
    with pytest.raises(InputError) as caught:
        load_radiograph(_encode(Image.fromarray(photo), "JPEG"), "image/jpeg")
    assert "colour" in caught.value.reason and caught.value.field == "image"


def test_grey_jpeg_saved_as_rgb_is_accepted(chest_pixels) -> None:
    grey = Image.fromarray(np.rint(chest_pixels * 255).astype(np.uint8)).convert("RGB")
    loaded = load_radiograph(_encode(grey, "JPEG"), "image/jpeg")
    assert loaded.image.mode == "L" and not any("colour" in d for d in loaded.doubts)


@pytest.mark.parametrize("modality", ["MR", "CT", "US", "MG"])
def test_non_radiograph_dicom_is_refused(chest_pixels, modality) -> None:
    with pytest.raises(InputError) as caught:
        load_radiograph(make_dicom(chest_pixels, modality=modality))
    assert f"Modality is {modality}" in caught.value.reason and "CR or DX" in caught.value.reason


@pytest.mark.parametrize("body_part", ["HEAD", "KNEE", "ABDOMEN", "SKULL"])
def test_non_chest_body_part_is_refused(chest_pixels, body_part) -> None:
    with pytest.raises(InputError, match=f"BodyPartExamined is {body_part}"):
        load_radiograph(make_dicom(chest_pixels, modality="DX", body_part=body_part))


def test_soft_doubts_are_recorded_not_refused(chest_pixels) -> None:
    loaded = load_radiograph(make_dicom(chest_pixels, modality="OT", body_part="UNSPECIFIED", view="LL"))
    text = " | ".join(loaded.doubts)
    assert "Modality is OT" in text and "UNSPECIFIED" in text and "lateral" in text


def test_plain_chest_dicom_has_no_doubts(chest_pixels) -> None:
    loaded = load_radiograph(make_dicom(chest_pixels, modality="CR", body_part="CHEST"))
    assert loaded.doubts == [] and loaded.source == "dicom"


@pytest.mark.parametrize("shape,reason", [((40, 40), "at least"), ((100, 400), "aspect ratio")])
def test_absurd_sizes_are_refused(shape, reason) -> None:
    noise = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    with pytest.raises(InputError, match=reason):
        load_radiograph(_encode(Image.fromarray(noise)))


def test_blank_image_is_refused() -> None:
    with pytest.raises(InputError, match="blank"):
        load_radiograph(_encode(Image.new("L", (256, 256), 128)))


def test_sixteen_bit_png_is_read_at_full_depth(chest_pixels) -> None:
    values = np.rint(chest_pixels * 4095).astype(np.uint16)
    loaded = load_radiograph(_encode(Image.fromarray(values)), "image/png")
    expected = (values - values.min()) / (values.max() - values.min()) * 255
    assert np.abs(np.asarray(loaded.image, dtype=float) - expected).max() <= 1.0
