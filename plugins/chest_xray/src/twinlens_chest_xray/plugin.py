"""The chest X-ray + report plugin. Research software: never a diagnostic device.

Torch-free at import: the API reads its schemas and calls `sanitize`, `prepare` and
`decide` without loading the engine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Dataset, DatasetOptions, Plugin, RawImage, RawInput
from twinlens.contract.prediction import Prediction
from twinlens.contract.sample import Sample
from twinlens.contract.schema import ImageInput, InputSchema, LabelSchema, TextField
from twinlens.contract.spec import ImageEncoderSpec, ModelSpec, TextEncoderSpec, TrainConfig
from twinlens.contract.uploads import check_picture
from twinlens_chest_xray import decide as decision
from twinlens_chest_xray import labels, reports
from twinlens_chest_xray.datasets import Reader
from twinlens_chest_xray.gate import LATERAL_VIEWS
from twinlens_chest_xray.deid import deidentify_dicom_bytes
from twinlens_chest_xray.dicom_io import DICOM_MEDIA_TYPE, check_dicom_upload, is_dicom
from twinlens_chest_xray.imaging import load_radiograph, strip_picture_metadata
from twinlens_chest_xray.known_phi import KnownPhi, known_phi_from_dicom
from twinlens_chest_xray.phi_text import scrub_text
from twinlens_chest_xray.studies import require_one_study

if TYPE_CHECKING:
    from PIL import Image

REPORT, HISTORY = "report", "history"
POLICY_ENV = "TWINLENS_CHEST_XRAY_POLICY"  # path to a JSON DecisionPolicy
UNCERTAIN_ENV = "TWINLENS_CHEST_XRAY_UNCERTAIN_POLICY"  # ignore | positive | negative


class ChestXrayPlugin(Plugin):
    name = "chest_xray"
    version = "0.1.0"
    description = ("Chest radiograph (DICOM/PNG/JPEG) plus its report and/or clinical history -> the 14 CheXpert "
                   "findings and a triage urgency, with PHI removed before anything is kept.")
    intended_use = decision.INTENDED_USE

    def __init__(self, policy: decision.DecisionPolicy | None = None, uncertain_policy: str | None = None):
        configured = os.environ.get(POLICY_ENV)
        self.policy = policy or (decision.DecisionPolicy.from_file(configured) if configured else decision.DecisionPolicy())
        self.uncertain_policy = uncertain_policy or os.environ.get(UNCERTAIN_ENV) or None

    # -- declarations ---------------------------------------------------------------------
    def label_schema(self) -> LabelSchema:
        return labels.label_schema()

    def input_schema(self) -> InputSchema:
        return InputSchema(
            image=ImageInput(media_types=(DICOM_MEDIA_TYPE, "image/png", "image/jpeg"), max_images=len(VIEWS), views=VIEWS,
                             description="The study's chest radiographs, frontal (PA/AP) and lateral: DICOM (CR/DX), or "
                                         "8/16-bit greyscale PNG/JPEG. A DICOM's ViewPosition names its view when the "
                                         "upload does not."),
            texts=(TextField(name=REPORT, description="Radiology report (FINDINGS/IMPRESSION sections parsed when present)."),
                   TextField(name=HISTORY, description="Clinical history or indication.")),
        )

    def default_model_spec(self) -> ModelSpec:
        # From scratch: no pretrained radiograph weights exist offline. A small ResNet at
        # 96 px grey trains on two CPU cores in minutes; the pretrained MiniLM is frozen
        # (its outputs are computed once and cached), which keeps text cheap. Strong
        # modality dropout keeps the image branch learning while the text branch is easy.
        return ModelSpec(
            image_encoder=ImageEncoderSpec(name="resnet10t", image_size=96, grayscale=True,
                                           mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
            text_encoder=TextEncoderSpec(freeze=True, max_length=96),
            fusion="concat", hidden_dim=128, dropout=0.1,
            text_inputs=[REPORT, HISTORY], modalities=["image", REPORT, HISTORY],
            # A slot per view; studies of one frontal image train a single-image model.
            max_images=len(VIEWS), image_views=list(VIEWS),
        )

    def training_defaults(self) -> TrainConfig:
        # A quarter held out: temperature scaling needs enough validation rows to be stable.
        return TrainConfig(epochs=20, batch_size=32, lr=2e-3, patience=6, monitor="findings.auroc", val_fraction=0.25,
                           modality_dropout=0.4, uncertain_policy="ignore")

    # -- uploads, privacy and preprocessing -----------------------------------------------
    def check_image_format(self, data: bytes, *, max_pixels: int) -> str:
        """DICOM by its magic bytes, its header read (the pixels counted, not decoded);
        PNG/JPEG by their headers. Neither is decoded here: sanitize() decodes every
        pixel right after this check, and reports corrupt data as this check would."""
        if is_dicom(data):
            check_dicom_upload(data, max_pixels=max_pixels)
            return DICOM_MEDIA_TYPE
        return check_picture(data, self.accepted_media_types(), max_pixels=max_pixels, verify_pixels=False)

    def sanitize(self, raw: RawInput) -> RawInput:
        """PHI out of everything: DICOM tags de-identified (PS3.15 basic profile), PNG/JPEG
        metadata dropped, texts and string metadata scrubbed, and every name, ID, date and
        address the DICOM header held removed from those texts too. Call before storing anything."""
        require_one_study([(item.data, is_dicom(item.data, item.media_type)) for item in raw.images])
        images, texts, metadata = [], dict(raw.texts), dict(raw.metadata)
        for item in raw.images:  # every view of the study, each header's PHI out of the texts
            known = header_phi(item.data, item.media_type)  # read before de-identification empties the header
            texts, metadata = _scrubbed_texts(texts, known), _scrubbed_metadata(metadata, known)
            data, media_type = _without_identifying_metadata(item.data, item.media_type)
            images.append(RawImage(data, media_type, item.view))
        if not raw.images:
            texts, metadata = _scrubbed_texts(texts, KnownPhi()), _scrubbed_metadata(metadata, KnownPhi())
        return RawInput.of_images(images, texts=texts, metadata=metadata)

    def load_image(self, data: bytes, media_type: str | None = None) -> "Image.Image":
        return load_radiograph(data, media_type).image

    def clean_text(self, name: str, text: str | None) -> str | None:
        text = scrub_text(text)
        if text is None or not text.strip():
            return None
        return reports.model_text(text) if name == REPORT else " ".join(text.split())

    def prepare(self, raw: RawInput) -> Sample:
        # No sanitize() here: in the service the API stored sanitized inputs already, and
        # re-encoding the image would only decode it once more, while just its pixels are
        # kept (read in the mode sanitize stores them in). Texts and metadata are scrubbed
        # again, which is cheap, because inputs from the CLI were never sanitized (their
        # DICOM header still names the patient: the one parse for the pixels gives it too).
        radiographs = [load_radiograph(item.data, item.media_type, as_stored=True) for item in raw.images]
        scrubbed, metadata = dict(raw.texts), dict(raw.metadata)
        for radiograph in radiographs:
            scrubbed, metadata = _scrubbed_texts(scrubbed, radiograph.known_phi), _scrubbed_metadata(metadata, radiograph.known_phi)
        if not radiographs:
            scrubbed = _scrubbed_texts(scrubbed, KnownPhi())
            metadata = _scrubbed_metadata(metadata, KnownPhi())
        texts = {name: self.clean_text(name, scrubbed.get(name)) for name in (REPORT, HISTORY)}
        if not radiographs and not any(texts.values()):
            raise InputError("inputs", "neither an image nor a report or history was given")
        views = [item.view or view_of(radiograph) for item, radiograph in zip(raw.images, radiographs)]
        doubts = study_doubts(radiographs, views)
        extras = {"input_doubts": doubts, **report_extras(scrubbed.get(REPORT))}
        meta = {**metadata, "input_doubts": doubts, "extras": extras}
        if radiographs:
            meta["image_source"], meta["dicom"] = radiographs[0].source, radiographs[0].dicom
            if len(radiographs) > 1:
                meta["views"] = views
        return Sample.of_images([radiograph.image for radiograph in radiographs], views, texts=texts, meta=meta)

    # -- data -----------------------------------------------------------------------------
    def read_dataset(self, path: Path, options: DatasetOptions | None = None) -> Dataset:
        """Generic manifest (.jsonl), CheXpert CSV, or MIMIC-CXR folder; see the README."""
        return Reader(self._load_for_dataset, self.clean_text, self.uncertain_policy).read(Path(path), options)

    def _load_for_dataset(self, data: bytes, media_type: str | None) -> tuple[Any, list[str], KnownPhi, str | None]:
        radiograph = load_radiograph(data, media_type)
        return radiograph.image, radiograph.doubts, radiograph.known_phi, view_of(radiograph)

    def make_sample_dataset(self, out_dir: Path, n: int = 200, seed: int = 0) -> Path:
        from twinlens_chest_xray.sample_data import make_sample_dataset

        return make_sample_dataset(Path(out_dir), n=n, seed=seed)

    # -- decision -------------------------------------------------------------------------
    def decide(self, prediction: Prediction) -> dict[str, Any]:
        return decision.decide(prediction, self.policy, self.version)

    def decision_model(self) -> type[decision.ChestXrayDecision]:
        return decision.ChestXrayDecision


def _without_identifying_metadata(image: bytes, media_type: str | None) -> tuple[bytes, str]:
    if is_dicom(image, media_type):
        return deidentify_dicom_bytes(image), DICOM_MEDIA_TYPE
    return strip_picture_metadata(image)


VIEWS = ("frontal", "lateral")
FRONTAL_POSITIONS = {"PA", "AP"}


def view_of(radiograph: Any) -> str | None:
    """frontal/lateral from a DICOM's ViewPosition; None when the header does not say (or
    for a PNG/JPEG)."""
    position = str(radiograph.dicom.get("view_position") or "").upper()
    if position in FRONTAL_POSITIONS:
        return "frontal"
    return "lateral" if position in LATERAL_VIEWS else None


def study_doubts(radiographs: list[Any], views: list[str | None]) -> list[str]:
    """Every image's doubts; a lateral view beside a frontal one is what a study is, not a doubt."""
    with_frontal = "frontal" in views or (len(radiographs) > 1 and views[0] is None)
    doubts: list[str] = []
    for radiograph, view in zip(radiographs, views):
        doubts += [d for d in radiograph.doubts if not (with_frontal and view == "lateral" and d.startswith("lateral view"))]
    return doubts


def header_phi(image: bytes | None, media_type: str | None) -> KnownPhi:
    """What a DICOM upload's header says about the patient; nothing for PNG/JPEG."""
    return known_phi_from_dicom(image) if image and is_dicom(image, media_type) else KnownPhi()


def _scrubbed_texts(texts: dict[str, str | None], known: KnownPhi) -> dict[str, str | None]:
    return {name: scrub_text(text, known) for name, text in texts.items()}


def _scrubbed_metadata(metadata: dict[str, Any], known: KnownPhi) -> dict[str, Any]:
    return {key: scrub_text(value, known) if isinstance(value, str) else value for key, value in metadata.items()}


def report_extras(report: str | None) -> dict[str, Any]:
    """What the report itself says, for decide()'s rules and for explanation."""
    mentions = reports.extract_mentions(report)
    return {
        "report_findings": reports.aggregate(mentions),
        "report_mentions": [m.to_dict() for m in mentions],
        "report_critical_phrases": reports.stated_phrases(report, decision.CRITICAL_REPORT_PHRASES),
    }
