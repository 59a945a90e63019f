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


# The statuses of images that cannot be used, one per cause (docs/security.md): too many
# pixels or bytes 413; a format the plugin does not take 415; bytes that are no readable
# image (unidentified, truncated, corrupt) 422, however far the decoder got.
TOO_LARGE, UNREADABLE = 413, 422


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) and check the pixel count; raise InputError on anything wrong."""
    try:
        with warnings.catch_warnings():
            # The pixel count is checked below against our own limit; PIL's warning (at
            # 89 Mpx) would only refuse images a larger max_pixels allows.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InputError("image", _bomb_reason(max_pixels), status=TOO_LARGE) from exc
    except UnidentifiedImageError as exc:
        raise InputError("image", "not a readable image: no image format recognised in the bytes", status=UNREADABLE) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError("image", f"not a readable image: {exc}", status=UNREADABLE) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise InputError("image", f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}", status=TOO_LARGE)
    return image


def _bomb_reason(max_pixels: int) -> str:
    """PIL refuses to open an image of more than twice its MAX_IMAGE_PIXELS (a
    decompression bomb) without saying its size; that is over any limit up to there."""
    refused_above = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return f"more than {refused_above} pixels exceeds the limit of {min(max_pixels, refused_above)} pixels"


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
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError("image", f"not a readable image: corrupt image data: {exc}", status=UNREADABLE) from exc
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
