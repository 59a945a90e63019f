"""The support-ticket plugin: photo + ticket text (+ text read from the photo) -> fault,
severity, next step and team.

Importing this module loads neither torch nor the OCR engine: the API reads the schemas
and calls `prepare`/`decide` without the model; OCR loads on the first photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Dataset, DatasetOptions, ExportedExample, Plugin, RawInput
from twinlens.contract.prediction import Prediction
from twinlens.contract.sample import Sample
from twinlens.contract.schema import ImageInput, InputSchema, LabelSchema, MetadataField, TextField
from twinlens.contract.spec import AugmentSpec, ImageEncoderSpec, ModelSpec, TextEncoderSpec, TrainConfig

from twinlens_support_ticket.decision import DecisionPolicy, TicketDecision, decide
from twinlens_support_ticket.labels import LABEL_SCHEMA
from twinlens_support_ticket.product import WARRANTY_STATUSES, parse_product
from twinlens_support_ticket.samples import MAX_PHOTOS, build_sample, join_ocr, ticket_text

if TYPE_CHECKING:
    from PIL import Image

MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp")
PIL_FORMATS = {"JPEG", "PNG", "WEBP", "MPO"}  # MPO: the multi-picture JPEG some phones write
TEXT_LIMIT = 20_000


class SupportTicketPlugin(Plugin):
    name = "support_ticket"
    version = "0.1.0"
    description = (
        "Triage of customer support tickets about faulty devices: reads the attached photo, the "
        "ticket text and any text visible in the photo (error codes, on-screen warnings) and says "
        "what is wrong (fault), how bad it is (severity), what to do next and which team handles it."
    )
    intended_use = (
        "Decision support for support agents: it proposes an action and a team and flags uncertain "
        "and safety-relevant tickets for a person. It does not replace a technician's inspection, and "
        "safety escalations (swollen batteries, burning, smoke) must always reach a person."
    )

    def __init__(self, policy: DecisionPolicy | None = None):
        self.policy = policy or DecisionPolicy()

    # -- declarations -------------------------------------------------------------------
    def label_schema(self) -> LabelSchema:
        return LABEL_SCHEMA

    def input_schema(self) -> InputSchema:
        return InputSchema(
            image=ImageInput(required=False, media_types=MEDIA_TYPES, max_images=MAX_PHOTOS,
                             description=f"Up to {MAX_PHOTOS} photos of the product (JPEG, PNG or WebP; a close-up, the "
                                         "whole device, a screenshot); EXIF orientation is honoured. OCR reads each."),
            texts=(
                TextField(name="text", description="The ticket body (or subject and body together).", max_chars=TEXT_LIMIT),
                TextField(name="subject", description="The ticket subject; joined before the body.", max_chars=500),
                TextField(name="ocr", max_chars=TEXT_LIMIT,
                          description="Text visible in the photo. Leave empty: it is read from the photo by OCR. "
                                      "Give it only to reuse an OCR result you already have."),
            ),
            metadata=(
                MetadataField(name="product_line", description="Product line, e.g. Nimbus."),
                MetadataField(name="model", description="Product model, e.g. Nimbus 6 Pro."),
                MetadataField(name="purchase_date", type="date", description="Date of purchase (YYYY-MM-DD)."),
                MetadataField(name="warranty_status", choices=WARRANTY_STATUSES, description="Warranty status."),
            ),
        )

    def default_model_spec(self) -> ModelSpec:
        # Sized for a laptop CPU: a small CNN from scratch (no pretrained image weights are
        # assumed to exist) and the pretrained MiniLM, frozen, so its outputs are computed
        # once and cached for all epochs. The two texts share that one encoder. test_resnet is
        # timm's smallest ResNet: 3,000 tickets train in about 20 minutes on 2 CPU cores.
        return ModelSpec(
            image_encoder=ImageEncoderSpec(name="test_resnet", pretrained=False, image_size=128),
            text_encoder=TextEncoderSpec(freeze=True, max_length=96),
            fusion="concat",
            hidden_dim=128,
            dropout=0.2,
            text_inputs=["text", "ocr"],
            modalities=["image", "text", "ocr"],
            # One slot per photo; training on single-photo tickets gives one slot.
            max_images=MAX_PHOTOS,
        )

    def training_defaults(self) -> TrainConfig:
        # The small CNN learns from scratch and slowly, while the frozen MiniLM features make
        # the words an easy shortcut (the fused model memorises vague tickets' words). Enough
        # tickets is what fixes that; augmentation and the image-alone loss add about 0.02
        # fault macro-F1 on top (EVALUATION.md has the runs).
        return TrainConfig(epochs=30, batch_size=32, lr=2e-3, patience=10, modality_dropout=0.25,
                           monitor="fault.macro_f1", unimodal_loss_weight=1.0, augment=AugmentSpec(enabled=True))

    # -- preprocessing ------------------------------------------------------------------
    def load_image(self, data: bytes, media_type: str | None = None) -> "Image.Image":
        from twinlens.contract.images import decode_image, open_image

        detected = open_image(data).format
        if detected not in PIL_FORMATS:
            raise InputError("image", f"{detected or 'unknown'} images are not accepted; send JPEG, PNG or WebP", status=415)
        return decode_image(data)

    def prepare(self, raw: RawInput) -> Sample:
        images = [self.load_image(item.data, item.media_type) for item in raw.images]
        image = images[0] if images else None
        for name, limit in (("text", TEXT_LIMIT), ("subject", 500), ("ocr", TEXT_LIMIT)):
            if len(raw.texts.get(name) or "") > limit:
                raise InputError(name, f"longer than {limit} characters")
        text = ticket_text(raw.texts.get("subject"), raw.texts.get("text"))
        if image is None and text is None:
            raise InputError("inputs", "send a photo, a ticket text, or both")
        product = parse_product(raw.metadata)
        return build_sample(image=image, text=text, ocr_text=self._ocr(images, raw.texts.get("ocr")), product=product,
                            more_images=images[1:])

    @staticmethod
    def _ocr(images: "list[Image.Image]", given: str | None) -> str | None:
        """The `ocr` text given with the job, else what OCR reads in each photo, joined."""
        if given and given.strip():
            return given.strip()
        if not images:
            return None
        from twinlens_support_ticket.ocr import read_text

        return join_ocr([text for image in images if (text := read_text(image))])

    # -- data ---------------------------------------------------------------------------
    def read_dataset(self, path: Path, options: DatasetOptions | None = None) -> Dataset:
        from twinlens_support_ticket.dataset import read_export

        return read_export(Path(path), options)

    def make_sample_dataset(self, out_dir: Path, n: int = 200, seed: int = 0) -> Path:
        from twinlens_support_ticket.generate.build import make_sample_dataset

        return make_sample_dataset(Path(out_dir), n=n, seed=seed)

    export_file_name = "tickets.jsonl"

    def export_row(self, example: ExportedExample) -> dict[str, Any]:
        """A helpdesk export row (the README's format): the job's body is the description,
        its photo the one attachment; an OCR text given with the job is not kept (the
        reader runs OCR on the photo again)."""
        row = {name: example.metadata.get(name) for name in ("product_line", "model", "purchase_date", "warranty_status")}
        row.update(ticket_id=example.id, subject=example.texts.get("subject"), description=example.texts.get("text"),
                   attachments=[example.image_path] if example.image_path else [])
        row.update({name: example.labels.get(name) for name in ("fault", "severity")})
        return row

    # -- decision -----------------------------------------------------------------------
    def decide(self, prediction: Prediction) -> dict[str, Any]:
        return decide(prediction, self.policy)

    def decision_model(self) -> type[TicketDecision]:
        return TicketDecision
