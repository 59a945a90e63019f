"""Reading DICOM: recognising it, parsing it, checking an upload from its header, and
turning its pixels into a display-ready greyscale array.

The display pipeline follows DICOM's: stored values (BitsStored masked by pydicom) ->
modality LUT (rescale slope/intercept or Modality LUT Sequence) -> VOI LUT Sequence or
window centre/width -> MONOCHROME1 inverted, so that bright always means dense, as on a
MONOCHROME2 display.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder
from pydicom.uid import UID, ImplicitVRLittleEndian

from twinlens.contract.errors import InputError
from twinlens.contract.images import DEFAULT_MAX_PIXELS, UNREADABLE

DICOM_MEDIA_TYPE = "application/dicom"
DICOM_MEDIA_TYPES = (DICOM_MEDIA_TYPE, "application/dicom+octet-stream")
GREY_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")


def is_dicom(data: bytes, media_type: str | None = None) -> bool:
    """A Part 10 file by its magic bytes, or bytes the caller declared to be DICOM (a bare
    data set has no preamble to sniff)."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    return (media_type or "").split(";")[0].strip().lower() in DICOM_MEDIA_TYPES


def read_dicom(data: bytes) -> Dataset:
    """Parse DICOM bytes; a file without the 128-byte preamble is accepted too."""
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many kinds on garbage; all mean the same here
        raise InputError("image", f"not a readable DICOM file: {exc}", status=UNREADABLE) from exc


def check_dicom_upload(data: bytes, *, max_pixels: int) -> None:
    """Raise InputError unless the header parses and its frames hold at most `max_pixels`.

    Reads the tags only (the pixel data is neither read nor decoded), so an upload is
    judged before any of its pixel data is touched."""
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        pixels = int(header.Rows) * int(header.Columns) * int(getattr(header, "NumberOfFrames", 1) or 1)
    except Exception as exc:  # pydicom raises many types for malformed files
        raise InputError("image", f"not a readable DICOM file: {exc}", status=UNREADABLE) from exc
    if pixels > max_pixels:
        raise InputError("image", f"{pixels} pixels exceeds the limit of {max_pixels}", status=413)


@dataclass
class DicomInfo:
    modality: str | None
    body_part: str | None
    view_position: str | None
    photometric: str
    transfer_syntax: str
    burned_in_annotation: bool
    frames: int
    notes: list[str] = field(default_factory=list)


def dicom_info(ds: Dataset) -> DicomInfo:
    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        return str(value).strip().upper() or None if value is not None else None

    return DicomInfo(
        modality=text("Modality"),
        body_part=text("BodyPartExamined"),
        view_position=text("ViewPosition"),
        photometric=text("PhotometricInterpretation") or "MONOCHROME2",
        transfer_syntax=str(transfer_syntax(ds)),
        burned_in_annotation=text("BurnedInAnnotation") == "YES",
        frames=int(ds.get("NumberOfFrames", 1) or 1),
    )


def transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(uid) if uid else ImplicitVRLittleEndian


def check_decodable(ds: Dataset) -> None:
    """Raise InputError 415 naming the transfer syntax when no decoder can read it here."""
    uid = transfer_syntax(ds)
    if not uid.is_compressed:
        return
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise InputError("image", f"DICOM transfer syntax {uid.name} ({uid}) is not supported: no decoder exists for it",
                         status=415) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise InputError("image", f"DICOM transfer syntax {uid.name} ({uid}) cannot be decoded here "
                         f"(missing decoder: {missing})", status=415)


def display_array(ds: Dataset, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The first frame as float32 in [0, 1], 1 = dense (bright), whatever the photometric."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > max_pixels:
        raise InputError("image", f"{cols}x{rows} = {rows * cols} pixels exceeds the limit of {max_pixels}", status=413)
    check_decodable(ds)
    try:
        stored = ds.pixel_array
    except Exception as exc:  # decoders raise ValueError/RuntimeError/... on bad pixel data
        raise InputError("image", f"DICOM pixel data could not be decoded: {exc}", status=422) from exc
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        stored = stored[0]
    values = apply_modality_lut(stored, ds).astype(np.float64)
    shown = _apply_voi(values, ds)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper() == "MONOCHROME1":
        shown = 1.0 - shown
    return shown.astype(np.float32)


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return apply_voi(values.round().astype(np.int64), ds).astype(np.float64) / float(2**bits - 1)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
        return window(values, center, width, function)
    return _min_max(values)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """VOI window to [0, 1] per PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID)."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT" or width <= 1:
        return np.clip((values - (center - width / 2.0)) / width, 0.0, 1.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _first(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0]
    return float(value)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)
