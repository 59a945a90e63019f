"""One place that turns a ticket's parts into a Sample, for jobs and data sets alike.

The model sees two texts, each its own modality: "text" (the ticket: subject and body)
and "ocr" (what was read from the photo). The OCR text is never glued into the ticket
text: the photo may show an error code the customer never typed, and keeping the inputs
apart lets the model, the contributions and the explanation tell them apart too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twinlens.contract.sample import Sample

from twinlens_support_ticket.product import ProductInfo
from twinlens_support_ticket.safety import hazard_mentions

if TYPE_CHECKING:
    from PIL import Image

# Photos are kept at most this large once OCR has read them: the model looks at ~128 px,
# and a data set of 12-megapixel phone photos would not fit in memory otherwise.
WORKING_SIDE = 768


def ticket_text(subject: str | None, body: str | None) -> str | None:
    """Subject and body as one text, the subject first as its own sentence."""
    subject = " ".join((subject or "").split())
    body = " ".join((body or "").split())
    if subject and body:
        joiner = " " if subject[-1] in ".!?:" else ". "
        return subject + joiner + body
    return subject or body or None


def working_copy(image: "Image.Image") -> "Image.Image":
    if max(image.size) <= WORKING_SIDE:
        return image
    copy = image.copy()
    copy.thumbnail((WORKING_SIDE, WORKING_SIDE))
    return copy


# Photos one ticket may carry (a close-up, the whole device, a screenshot...).
MAX_PHOTOS = 3


def join_ocr(texts: list[str]) -> str | None:
    """The text OCR read from each photo, one photo after the other (None when none had any)."""
    return "\n".join(text for text in texts if text) or None


def build_sample(
    *,
    image: "Image.Image | None",
    text: str | None,
    ocr_text: str | None,
    product: ProductInfo,
    labels: dict[str, Any] | None = None,
    sample_id: str | None = None,
    meta: dict[str, Any] | None = None,
    more_images: "list[Image.Image] | None" = None,
) -> Sample:
    extras = {
        "ticket_text": text,
        "ocr_text": ocr_text,
        "safety_mentions": hazard_mentions(text, ocr_text),
        "product": product.to_dict(),
    }
    return Sample(
        image=working_copy(image) if image is not None else None,
        texts={"text": text, "ocr": ocr_text},
        labels=dict(labels or {}),
        id=sample_id,
        # "extras" is what a prediction of this sample should carry for decide() and the
        # explanation: the OCR text, burn/smoke mentions and the product details.
        meta={**(meta or {}), "extras": extras},
        more_images=[working_copy(extra) for extra in more_images or []],
    )
