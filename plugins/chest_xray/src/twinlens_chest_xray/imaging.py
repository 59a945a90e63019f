"""Image bytes (DICOM, PNG, JPEG; 8- or 16-bit grey) -> a gated greyscale radiograph."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from twinlens.contract.errors import InputError
from twinlens.contract.images import DEFAULT_MAX_PIXELS, open_image
from twinlens_chest_xray import gate
from twinlens_chest_xray.dicom_io import dicom_info, display_array, is_dicom, read_dicom
from twinlens_chest_xray.known_phi import KnownPhi, known_phi_from_dataset

# Images are kept at most this large after loading: plenty for models of 128-448 px,
# and it keeps a few thousand samples in memory.
WORKING_SIZE = 512
# Modes a PNG stores without loss; pictures in any other mode are kept as RGB.
STORABLE_MODES = ("L", "I;16", "I", "RGB", "RGBA", "LA")


@dataclass
class Radiograph:
    image: Image.Image  # mode "L", bright = dense
    source: str  # "dicom", "png", "jpeg", ...
    doubts: list[str] = field(default_factory=list)
    dicom: dict[str, object] = field(default_factory=dict)
    # What the DICOM header said about the patient, read from the same parse (for the
    # known-PHI cross-scrub of the study's texts); nothing for PNG/JPEG.
    known_phi: KnownPhi = field(default_factory=KnownPhi)


def load_radiograph(data: bytes, media_type: str | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                    working_size: int | None = WORKING_SIZE, as_stored: bool = False) -> Radiograph:
    """Decode, normalise and gate one image; InputError when it is no chest radiograph.

    `as_stored`: read a PNG/JPEG in the mode `strip_picture_metadata` stores it in, so a
    job's picture gives the same pixels whether or not it went through sanitize() first.
    """
    known = KnownPhi()
    if is_dicom(data, media_type):
        ds = read_dicom(data)
        grey, source, doubts, header = _from_dicom(ds, max_pixels)
        known = known_phi_from_dataset(ds)
    else:
        grey, source, doubts, header = _from_picture(data, max_pixels, as_stored)
    doubts += gate.check_geometry_and_contrast(grey)
    return Radiograph(image=to_pil(grey, working_size), source=source, doubts=doubts, dicom=header, known_phi=known)


def _from_dicom(ds, max_pixels: int) -> tuple[np.ndarray, str, list[str], dict[str, object]]:
    if "PixelData" not in ds:
        raise InputError("image", "DICOM file has no pixel data", status=422)
    info = dicom_info(ds)
    doubts = gate.check_dicom_header(info)
    grey = display_array(ds, max_pixels=max_pixels)
    header = {"modality": info.modality, "body_part": info.body_part, "view_position": info.view_position,
              "photometric": info.photometric, "transfer_syntax": info.transfer_syntax}
    return grey, "dicom", doubts, header


def _from_picture(data: bytes, max_pixels: int, as_stored: bool) -> tuple[np.ndarray, str, list[str], dict[str, object]]:
    image, source = decode_picture(data, max_pixels)
    if as_stored:
        image = storable(image)
    doubts: list[str] = []
    if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        doubts += gate.check_colour(np.asarray(image.convert("RGB")))
    return grey_array(image), source, doubts, {}


def decode_picture(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, str]:
    """PNG/JPEG bytes -> the decoded picture, upright (EXIF orientation applied), and the
    format it was decoded from ("png", "jpeg"...; the upright copy no longer knows)."""
    image = open_image(data, max_pixels=max_pixels)
    source = (image.format or "image").lower()
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError("image", f"corrupt image data: {exc}", status=422) from exc
    return image, source


def storable(image: Image.Image) -> Image.Image:
    """The picture in a mode a PNG holds without loss (anything else becomes RGB)."""
    return image if image.mode in STORABLE_MODES else image.convert("RGB")


def grey_array(image: Image.Image) -> np.ndarray:
    """PIL image of any grey depth -> float32 in [0, 1]. 8-bit keeps its scale; deeper
    images (16-bit PNG often uses only 10-14 bits) are stretched to their own range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        return ((values - low) / (high - low or 1.0)).astype(np.float32)
    return (np.asarray(image.convert("L"), dtype=np.float32) / 255.0)


def to_pil(grey: np.ndarray, working_size: int | None = WORKING_SIZE) -> Image.Image:
    image = Image.fromarray(np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8))
    if working_size and max(image.size) > working_size:
        image.thumbnail((working_size, working_size), Image.Resampling.LANCZOS)
    return image


def strip_picture_metadata(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, str]:
    """Re-encode a PNG/JPEG as a bare PNG: EXIF, comments and text chunks (which can hold
    names and dates) are dropped; pixels and bit depth are kept, orientation applied."""
    image = storable(decode_picture(data, max_pixels)[0])
    clean = Image.new(image.mode, image.size)
    clean.frombytes(image.tobytes())
    out = io.BytesIO()
    clean.save(out, format="PNG")
    return out.getvalue(), "image/png"
