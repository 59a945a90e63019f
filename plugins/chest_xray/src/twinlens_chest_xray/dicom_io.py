"""Reading DICOM: recognising it, parsing it, checking an upload from its header, and
turning its pixels into a display-ready greyscale array.

The display pipeline follows DICOM's: stored values (BitsStored masked by pydicom) ->
modality LUT (rescale slope/intercept or Modality LUT Sequence) -> VOI LUT Sequence or
window centre/width -> MONOCHROME1 inverted, so that bright always means dense, as on a
MONOCHROME2 display.
"""

from __future__ import annotations

import io
import math
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
    """Parse DICOM bytes; a file without the 128-byte preamble is accepted too. The data set
    is well formed (`require_well_formed`): every use of it after this may trust that."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many kinds on garbage; all mean the same here
        raise InputError("image", f"not a readable DICOM file: {exc}", status=UNREADABLE) from exc
    require_well_formed(ds)
    return ds


def check_dicom_upload(data: bytes, *, max_pixels: int) -> None:
    """Raise InputError unless the header parses, is well formed and its frames hold at
    most `max_pixels`.

    Reads the tags only (the pixel data is neither read nor decoded), so an upload is
    judged before any of its pixel data is touched."""
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for malformed files
        raise InputError("image", f"not a readable DICOM file: {exc}", status=UNREADABLE) from exc
    require_well_formed(header)
    pixels = _whole_number(header, "Rows", 0) * _whole_number(header, "Columns", 0) * _whole_number(header, "NumberOfFrames", 1)
    if pixels > max_pixels:
        raise InputError("image", f"{pixels} pixels exceeds the limit of {max_pixels}", status=413)


def require_well_formed(ds: Dataset) -> None:
    """What a file must be for this plugin to read, de-identify and write it again. Each
    rule was found by fuzzing, as an exception pydicom raised long after the file was read
    (when a tag was first looked at, or when de-identification wrote the file back)."""
    try:
        # pydicom converts each tag's value when it is first looked at: an unknown value
        # representation or a value that does not parse raises here, not in a later step.
        elements = list(ds.iterall())
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            list(meta.iterall())
        uid = transfer_syntax(ds)
    except Exception as exc:
        raise InputError("image", f"not a readable DICOM file: {exc}", status=UNREADABLE) from exc
    if not uid.is_transfer_syntax:
        raise InputError("image", f"DICOM transfer syntax {uid} is not one this server knows", status=415)
    # Command (group 0000) and file meta (0002) elements belong to a message or the file's
    # header, never to the data set: pydicom refuses to write a file back with them.
    misplaced = next((element.tag for element in elements if element.tag.group in (0x0000, 0x0002)), None)
    if misplaced is not None:
        raise InputError("image", f"not a readable DICOM file: element {misplaced} does not belong in a data set", status=UNREADABLE)


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
        frames=_whole_number(ds, "NumberOfFrames", 1),
    )


def transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(uid) if uid else ImplicitVRLittleEndian


def check_decodable(ds: Dataset) -> None:
    """Raise InputError 415 naming the transfer syntax when no decoder can read it here."""
    uid = transfer_syntax(ds)
    if not uid.is_transfer_syntax:  # found by fuzzing: pydicom's is_compressed raises ValueError then
        raise InputError("image", f"DICOM transfer syntax {uid} is not one this server knows", status=415)
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
    rows, cols = _whole_number(ds, "Rows", 0), _whole_number(ds, "Columns", 0)
    if rows * cols > max_pixels:
        raise InputError("image", f"{cols}x{rows} = {rows * cols} pixels exceeds the limit of {max_pixels}", status=413)
    check_decodable(ds)
    try:
        stored = ds.pixel_array
    except Exception as exc:  # decoders raise ValueError/RuntimeError/... on bad pixel data
        raise InputError("image", f"DICOM pixel data could not be decoded: {exc}", status=422) from exc
    if _whole_number(ds, "NumberOfFrames", 1) > 1:
        stored = stored[0]
    try:
        values = apply_modality_lut(stored, ds).astype(np.float64)
    except (ValueError, TypeError) as exc:  # found by fuzzing: a rescale slope that is no number
        raise InputError("image", f"DICOM modality LUT could not be applied: {exc}", status=UNREADABLE) from exc
    shown = _apply_voi(values, ds)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper() == "MONOCHROME1":
        shown = 1.0 - shown
    return shown.astype(np.float32)


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return apply_voi(values.round().astype(np.int64), ds).astype(np.float64) / float(2**bits - 1)
    center, width = _first_number(ds, "WindowCenter"), _first_number(ds, "WindowWidth")
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


def _first_number(ds: Dataset, keyword: str) -> float | None:
    """A decimal tag's (first) value; None when absent or not finite (no window then).
    Found by fuzzing: a value that is no number ('abc') escaped as ValueError; it makes
    the file unreadable instead."""
    value = ds.get(keyword)
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError("image", f"DICOM {keyword} is not a number: {str(value)[:40]!r}", status=UNREADABLE) from exc
    return number if math.isfinite(number) else None


def _whole_number(ds: Dataset, keyword: str, default: int) -> int:
    """An integer tag's value (found by fuzzing: NumberOfFrames 'x' escaped as ValueError)."""
    try:
        return int(ds.get(keyword, default) or default)
    except (TypeError, ValueError) as exc:
        raise InputError("image", f"DICOM {keyword} is not a whole number", status=UNREADABLE) from exc


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)
