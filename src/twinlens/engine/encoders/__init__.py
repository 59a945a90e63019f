"""Image (timm) and text (Hugging Face) encoders that return token sequences.

Never downloads: Hugging Face and timm are put in offline mode before they are imported,
so asking for weights that are not on this machine fails at once with a clear error.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from twinlens.engine.encoders.image import ImageEncoder  # noqa: E402
from twinlens.engine.encoders.text import TextEncoder, load_tokenizer, resolve_text_model  # noqa: E402

__all__ = ["ImageEncoder", "TextEncoder", "load_tokenizer", "resolve_text_model"]
