"""DICOM display pipeline: photometric, rescale, VOI, BitsStored, transfer syntaxes."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RLELossless

from twinlens.contract.errors import InputError
from twinlens_chest_xray.imaging import load_radiograph
from twinlens_chest_xray.sample_data import make_dicom


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(load_radiograph(data, "application/dicom").image, dtype=np.int16)


def _edit(data: bytes, change) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    change(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("window", [True, False])
def test_monochrome1_twin_gives_the_same_pixels(chest_pixels, window) -> None:
    m2 = make_dicom(chest_pixels, photometric="MONOCHROME2", window=window)
    m1 = make_dicom(chest_pixels, photometric="MONOCHROME1", window=window)
    assert pydicom.dcmread(io.BytesIO(m1)).PhotometricInterpretation == "MONOCHROME1"
    # The stored values really are inverted...
    stored1 = pydicom.dcmread(io.BytesIO(m1)).pixel_array.astype(int)
    stored2 = pydicom.dcmread(io.BytesIO(m2)).pixel_array.astype(int)
    assert np.array_equal(stored1, 4095 - stored2)
    # ...and the loaded images are the same.
    assert np.abs(_pixels(m1) - _pixels(m2)).max() <= 1


def test_loaded_image_is_bright_where_dense(chest_pixels) -> None:
    loaded = _pixels(make_dicom(chest_pixels, photometric="MONOCHROME1"))
    expected = np.rint(chest_pixels * 255)
    assert np.corrcoef(loaded.ravel(), expected.ravel())[0, 1] > 0.99


def test_rescale_slope_and_intercept_are_applied_before_the_window(chest_pixels) -> None:
    plain = make_dicom(chest_pixels)
    rescaled = make_dicom(chest_pixels, rescale=(2.0, -1024.0))
    assert np.abs(_pixels(plain) - _pixels(rescaled)).max() <= 1
    # A window in rescaled units that only covers the lower half of values clips the rest.
    narrow = _edit(rescaled, lambda ds: (setattr(ds, "WindowCenter", -1024 + 2048), setattr(ds, "WindowWidth", 4096)))
    assert _pixels(narrow).max() == 255 and (_pixels(narrow) == 255).mean() > (_pixels(rescaled) == 255).mean()


def test_voi_lut_sequence_is_applied(chest_pixels) -> None:
    def add_lut(ds: Dataset) -> None:
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 12]
        item.LUTData = [min(4095, 2 * v) for v in range(4096)]  # a steeper curve that saturates at 2048
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = Sequence([item])
        del ds.WindowCenter
        del ds.WindowWidth

    base = make_dicom(chest_pixels)
    with_lut = _edit(base, add_lut)
    stored = pydicom.dcmread(io.BytesIO(base)).pixel_array.astype(int)
    expected = np.rint(np.minimum(4095, 2 * stored) / 4095 * 255)
    assert np.abs(_pixels(with_lut) - expected).max() <= 1


def test_bits_stored_is_respected(chest_pixels) -> None:
    base = make_dicom(chest_pixels, window=False)

    def garbage_in_high_bits(ds: Dataset) -> None:
        values = np.frombuffer(ds.PixelData, dtype=np.uint16) | np.uint16(0xA000)
        ds.PixelData = values.tobytes()

    dirty = _edit(base, garbage_in_high_bits)
    assert np.array_equal(_pixels(base), _pixels(dirty))


def test_compressed_transfer_syntax_is_decoded(chest_pixels) -> None:
    base = make_dicom(chest_pixels)
    ds = pydicom.dcmread(io.BytesIO(base))
    ds.compress(RLELossless)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert pydicom.dcmread(io.BytesIO(out.getvalue())).file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(_pixels(out.getvalue()), _pixels(base))


def test_undecodable_transfer_syntax_is_415_naming_it(chest_pixels) -> None:
    def mpeg(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: no decoder exists
        ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])

    data = _edit(make_dicom(chest_pixels), mpeg)
    with pytest.raises(InputError) as caught:
        load_radiograph(data, "application/dicom")
    assert caught.value.status == 415
    assert "MPEG2" in caught.value.reason and "1.2.840.10008.1.2.4.100" in caught.value.reason


def test_dicom_without_pixel_data_is_refused(chest_pixels) -> None:
    data = _edit(make_dicom(chest_pixels), lambda ds: ds.__delattr__("PixelData"))
    with pytest.raises(InputError, match="no pixel data"):
        load_radiograph(data)
