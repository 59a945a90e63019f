"""Reading the text in a photo (error dialogs, on-screen warnings, labels) with RapidOCR.

rapidocr-onnxruntime ships its ONNX models inside the wheel, so this works offline. The
engine takes about a second to load, so it is built lazily, once per process, on first
use; importing this module loads nothing heavy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twinlens_support_ticket.ocr_words import restore_spaces

if TYPE_CHECKING:
    from PIL import Image

# Lines the recogniser is less sure of than this are dropped: on photos of devices the
# detector also finds texture (wood grain, keyboard legends) that reads as noise.
MIN_LINE_SCORE = 0.6
# Photos are shrunk to this long side before OCR: plenty for on-screen text, and the
# detector's cost grows with the pixel count.
MAX_SIDE = 1280
# Bumped when what read_text returns for the same image changes (cached results go stale).
POSTPROCESS_VERSION = 2  # 2: spaces restored between run-together words

_engine: Any = None
_engine_lock = threading.Lock()
# onnxruntime sessions are thread-safe for inference, but RapidOCR keeps per-call state
# in Python objects, so calls are serialised.
_call_lock = threading.Lock()


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float
    top: float
    left: float


def get_engine() -> Any:
    """The process-wide RapidOCR engine, created on first use."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                from rapidocr_onnxruntime import RapidOCR

                _engine = RapidOCR()
    return _engine


def read_lines(image: "Image.Image") -> list[OcrLine]:
    """Recognised lines in reading order (top to bottom, then left to right)."""
    image = _shrink(image.convert("RGB"))
    with _call_lock:
        result, _elapsed = get_engine()(image)
    lines = [_line(item) for item in result or []]
    lines = [line for line in lines if line.score >= MIN_LINE_SCORE and line.text.strip()]
    return sorted(lines, key=lambda line: (round(line.top / 12), line.left))


def read_text(image: "Image.Image") -> str | None:
    """All recognised text as one line-separated string, or None when there is none."""
    lines = read_lines(image)
    return "\n".join(restore_spaces(line.text.strip()) for line in lines) or None


def _line(item: Any) -> OcrLine:
    box, text, score = item
    return OcrLine(
        text=str(text),
        score=float(score),
        top=min(point[1] for point in box),
        left=min(point[0] for point in box),
    )


def _shrink(image: "Image.Image") -> "Image.Image":
    longest = max(image.size)
    if longest <= MAX_SIDE:
        return image
    scale = MAX_SIDE / longest
    return image.resize((round(image.width * scale), round(image.height * scale)))
