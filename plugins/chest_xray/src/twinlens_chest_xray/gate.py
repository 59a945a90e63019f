"""The input validity gate: is this plausibly a chest radiograph?

Clear mismatches are refused with a reason (InputError) instead of being classified: a
DICOM from another modality or body part, a colour photograph, an absurd size or shape,
a blank frame. Softer doubts (unknown body part, lateral view, low contrast, slight
colour cast) do not refuse the input; they are returned and end in `needs_review`.
"""

from __future__ import annotations

import numpy as np

from twinlens.contract.errors import InputError
from twinlens_chest_xray.dicom_io import GREY_PHOTOMETRICS, DicomInfo

RADIOGRAPH_MODALITIES = {"CR", "DX"}
# Digitised film or screen captures: possibly a chest film, worth a human look.
DOUBTFUL_MODALITIES = {"OT", "SC", "DOC", "XC"}
CHEST_BODY_PARTS = ("CHEST", "THORAX", "THORACIC", "LUNG", "PORT CHEST", "PORTABLE CHEST", "RIBS", "TORSO")
NOT_CHEST_BODY_PARTS = ("HEAD", "SKULL", "BRAIN", "FACE", "SINUS", "HAND", "WRIST", "FINGER", "FOOT", "ANKLE",
                        "TOE", "KNEE", "HIP", "PELVIS", "ABDOMEN", "ABD", "FEMUR", "TIBIA", "LEG", "ARM",
                        "HUMERUS", "ELBOW", "FOREARM", "EXTREMITY", "BREAST", "CSPINE", "LSPINE", "SPINE", "NECK",
                        "JAW", "TMJ", "HEEL", "SCAPULA")
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}

MIN_SIDE, LOW_RES_SIDE = 64, 192
MAX_ASPECT, DOUBT_ASPECT = 2.0, 1.5
COLOUR_CHROMA = 24 / 255  # per-pixel channel spread that counts as coloured
COLOUR_REFUSE_FRACTION, COLOUR_DOUBT_FRACTION = 0.05, 0.005
BLANK_STD, LOW_CONTRAST_STD = 0.01, 0.05


def check_dicom_header(info: DicomInfo) -> list[str]:
    """Refuse a DICOM that is clearly not a chest radiograph; return soft doubts."""
    doubts: list[str] = []
    if info.modality in RADIOGRAPH_MODALITIES:
        pass
    elif info.modality is None or info.modality in DOUBTFUL_MODALITIES:
        doubts.append(f"DICOM Modality is {info.modality or 'missing'}, not CR/DX")
    else:
        raise InputError("image", f"DICOM Modality is {info.modality}; this plugin reads chest radiographs "
                         "(Modality CR or DX)", status=422)
    doubts += _check_body_part(info.body_part)
    if info.photometric not in GREY_PHOTOMETRICS:
        raise InputError("image", f"DICOM PhotometricInterpretation is {info.photometric}; a chest radiograph "
                         "is greyscale (MONOCHROME1 or MONOCHROME2)", status=422)
    if info.view_position in LATERAL_VIEWS:
        doubts.append(f"lateral view (ViewPosition {info.view_position}); the model is made for frontal views")
    if info.burned_in_annotation:
        doubts.append("DICOM declares burned-in annotation: text in the pixels is not removed")
    if info.frames > 1:
        doubts.append(f"multi-frame DICOM ({info.frames} frames): only the first frame was read")
    return doubts


def _check_body_part(body_part: str | None) -> list[str]:
    if body_part is None:
        return []
    words = body_part.replace("_", " ").replace("-", " ")
    if any(part in words for part in CHEST_BODY_PARTS):
        return []
    if any(word in NOT_CHEST_BODY_PARTS for word in words.split()) or words in NOT_CHEST_BODY_PARTS:
        raise InputError("image", f"DICOM BodyPartExamined is {body_part}; this plugin reads chest radiographs",
                         status=422)
    return [f"DICOM BodyPartExamined is {body_part}, not a chest body part"]


def check_colour(rgb: np.ndarray) -> list[str]:
    """Refuse a colour photograph: radiographs have (nearly) equal channels everywhere."""
    rgb = rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else float(rgb.max() or 1))
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    coloured = float((chroma > COLOUR_CHROMA).mean())
    if coloured > COLOUR_REFUSE_FRACTION:
        raise InputError("image", f"this is a colour image ({coloured:.0%} of pixels are coloured); a chest "
                         "radiograph is greyscale", status=422)
    if coloured > COLOUR_DOUBT_FRACTION:
        return [f"image has some colour ({coloured:.1%} of pixels): annotations or a photo of a screen?"]
    return []


def check_geometry_and_contrast(grey: np.ndarray) -> list[str]:
    """`grey` is the display image in [0, 1]. Refuse absurd sizes and blank frames."""
    height, width = grey.shape[:2]
    short, long = min(height, width), max(height, width)
    if short < MIN_SIDE:
        raise InputError("image", f"image is {width}x{height}; a radiograph needs at least {MIN_SIDE} px a side")
    if long / short > MAX_ASPECT:
        raise InputError("image", f"image aspect ratio {long / short:.2f} ({width}x{height}) is not that of a "
                         f"chest radiograph (at most {MAX_ASPECT})")
    spread = float(grey.std())
    if spread < BLANK_STD:
        raise InputError("image", "image is blank (nearly uniform pixel values)")
    doubts = []
    if short < LOW_RES_SIDE:
        doubts.append(f"low resolution ({width}x{height})")
    if long / short > DOUBT_ASPECT:
        doubts.append(f"unusual aspect ratio {long / short:.2f} for a chest radiograph")
    if spread < LOW_CONTRAST_STD:
        doubts.append(f"very low contrast (pixel std {spread:.3f})")
    return doubts
