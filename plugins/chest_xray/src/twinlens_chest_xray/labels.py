"""The 14 CheXpert findings, the triage urgency classes and the rule that links them."""

from __future__ import annotations

from twinlens.contract.schema import Label, LabelSchema, Task

FINDINGS_TASK = "findings"
URGENCY_TASK = "urgency"

# Order and names follow the CheXpert CSV columns exactly, so readers can map columns 1:1.
FINDING_DESCRIPTIONS: dict[str, str] = {
    "No Finding": "No abnormality of the lungs, pleura, heart or bones is seen (support devices may be present).",
    "Enlarged Cardiomediastinum": "The mediastinum or cardiomediastinal silhouette is wider than normal.",
    "Cardiomegaly": "The heart is enlarged: cardiac silhouette wider than half the thoracic width.",
    "Lung Opacity": "An area of increased density in the lung fields (any cause).",
    "Lung Lesion": "A focal nodule or mass in the lung.",
    "Edema": "Pulmonary oedema: fluid in the lungs, hazy perihilar opacities, interstitial lines.",
    "Consolidation": "Airspace filled with fluid or cells: dense opacity, often with air bronchograms.",
    "Pneumonia": "Infection of the lung, usually seen as a consolidation with a matching clinical history.",
    "Atelectasis": "Collapse or incomplete expansion of part of a lung: linear or plate-like opacity, volume loss.",
    "Pneumothorax": "Air in the pleural space: a visible pleural edge with no lung markings beyond it.",
    "Pleural Effusion": "Fluid in the pleural space: blunting of the costophrenic angle, basal meniscus.",
    "Pleural Other": "Other pleural abnormality: pleural thickening, plaques, fibrosis.",
    "Fracture": "A fracture of a rib, clavicle or other visible bone.",
    "Support Devices": "Tubes, lines, pacemakers or other medical devices projecting over the chest.",
}
FINDINGS: tuple[str, ...] = tuple(FINDING_DESCRIPTIONS)
NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"

URGENCY_DESCRIPTIONS: dict[str, str] = {
    "critical": "Needs attention within minutes (e.g. pneumothorax).",
    "urgent": "Needs attention within hours (e.g. pneumonia, oedema, effusion, new mass).",
    "routine": "Can wait for the normal reporting queue.",
}
URGENCY_LEVELS: tuple[str, ...] = ("critical", "urgent", "routine")
URGENCY_RANK = {"routine": 0, "urgent": 1, "critical": 2}

# Which findings make a study urgent or critical. Used to derive training labels for the
# urgency head from finding labels, and by decide()'s explicit rules.
CRITICAL_FINDINGS = ("Pneumothorax",)
URGENT_FINDINGS = ("Consolidation", "Pneumonia", "Edema", "Pleural Effusion", "Enlarged Cardiomediastinum", "Lung Lesion")


def label_schema() -> LabelSchema:
    findings = Task(
        name=FINDINGS_TASK,
        kind="multilabel",
        labels=tuple(Label(name=name, description=text) for name, text in FINDING_DESCRIPTIONS.items()),
        description="The 14 CheXpert observations, each present or absent.",
    )
    urgency = Task(
        name=URGENCY_TASK,
        kind="multiclass",
        labels=tuple(Label(name=name, description=text) for name, text in URGENCY_DESCRIPTIONS.items()),
        description="Triage urgency of the study.",
    )
    return LabelSchema(tasks=(findings, urgency))


def urgency_from_findings(positives: list[str]) -> str:
    """The documented rule linking finding labels to an urgency label."""
    if any(name in positives for name in CRITICAL_FINDINGS):
        return "critical"
    if any(name in positives for name in URGENT_FINDINGS):
        return "urgent"
    return "routine"


def with_no_finding(positives: list[str]) -> list[str]:
    """CheXpert's convention: No Finding is positive iff nothing but support devices is."""
    others = [name for name in positives if name not in (NO_FINDING, SUPPORT_DEVICES)]
    kept = [name for name in positives if name != NO_FINDING]
    return kept if others else [NO_FINDING, *kept]


def canonical_finding(name: str) -> str | None:
    """Match a finding name case- and space-insensitively; None when unknown."""
    wanted = name.strip().lower().replace("_", " ")
    for finding in FINDINGS:
        if finding.lower() == wanted:
            return finding
    return None
