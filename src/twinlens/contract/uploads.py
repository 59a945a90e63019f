"""What an uploaded picture really is: its format sniffed from the bytes (never the
caller's word for it), checked against what a plugin accepts before anything is stored.

Torch-free; the API calls it through `Plugin.check_image_format`, whose default knows the
formats PIL reads. Plugins with formats of their own (DICOM) check those themselves.
"""

from __future__ import annotations

from collections.abc import Collection

from PIL import Image

from twinlens.contract.errors import InputError
from twinlens.contract.images import decode_image, open_image

# Small decode size for the integrity check: JPEGs decode at 1/8 scale, still end to end.
CHECK_DECODE_SIZE = 64


def check_picture(data: bytes, accepted: Collection[str], *, max_pixels: int, verify_pixels: bool = True) -> str:
    """Return the picture's media type; raise InputError 415 (a format not accepted),
    413 (too many pixels) or 422 (not a readable image: unidentified or corrupt).

    `verify_pixels=False` reads the header only: for plugins whose sanitize() decodes
    every pixel right after, where a second decode here would find nothing new.
    """
    image = open_image(data, max_pixels=max_pixels)
    actual = Image.MIME.get(image.format or "", "")
    if actual not in accepted:
        raise InputError("image", f"the bytes are {actual or 'an unknown format'}; accepted: {sorted(accepted)}", status=415)
    if verify_pixels:
        decode_image(data, max_pixels=max_pixels, target_size=CHECK_DECODE_SIZE)
    return actual
