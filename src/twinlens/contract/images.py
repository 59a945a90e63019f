"""Safe image decoding shared by plugins, the API's validation and the workers.

Torch-free. Enforces a pixel ceiling before decoding (decompression bombs), honours EXIF
orientation, and lets JPEGs decode at reduced size when the model needs far fewer pixels
than the photo has (PIL's `draft` asks libjpeg for a 1/2, 1/4 or 1/8 scale decode).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from twinlens.contract.errors import InputError

DEFAULT_MAX_PIXELS = 40_000_000


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) and check the pixel count; raise InputError on anything wrong."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError("image", f"not a readable image ({exc.__class__.__name__})", status=415) from exc
    except OSError as exc:
        raise InputError("image", f"not a readable image: {exc}", status=415) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise InputError("image", f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}", status=413)
    return image


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
    mode: str = "RGB",
) -> Image.Image:
    """Decode to `mode` with EXIF rotation applied.

    With `target_size`, JPEGs are decoded at the smallest libjpeg scale that still keeps
    the short side >= target_size, which is several times faster on phone photos.
    """
    image = open_image(data, max_pixels=max_pixels)
    try:
        if target_size and image.format == "JPEG":
            image.draft(mode if mode in ("RGB", "L") else "RGB", (target_size, target_size))
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode != mode:
            image = _convert(image, mode)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError("image", f"corrupt image data: {exc}", status=422) from exc
    return image


def _convert(image: Image.Image, mode: str) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clipping at 255.
        import numpy as np

        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low or 1.0) * 255.0
        image = Image.fromarray(scaled.astype("uint8"), mode="L")
    if image.mode in ("RGBA", "LA", "P"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.split()[-1])
        image = background
    return image.convert(mode)
