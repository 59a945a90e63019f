"""Generated radiology reports and clinical histories (for demos and tests; not real patients).

Phrasing follows common chest radiograph reporting: FINDINGS then IMPRESSION, negations
("No pneumothorax."), hedges ("Possible small left effusion.", "cannot exclude"). Some
reports are terse ("Limited portable study. Comparison limited."), some miss what the
image shows, and some state what the image barely shows: neither modality alone tells all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_SIDES = ("right", "left")
_ZONES = ("upper", "mid", "lower")

POSITIVE_PHRASES: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("The cardiomediastinal silhouette is enlarged.", "Widening of the superior mediastinum.",
                                   "Mediastinal widening is noted."),
    "Cardiomegaly": ("{sev} cardiomegaly.", "The heart is enlarged.", "Cardiac silhouette is enlarged."),
    "Lung Opacity": ("Patchy {side} {zone} zone opacity.", "Hazy opacity in the {side} {zone} lung.",
                     "Ill-defined {side} {zone} zone opacities."),
    "Lung Lesion": ("A {mm} mm nodule in the {side} {zone} lung.", "{Side} {zone} lobe mass.",
                    "Rounded {mm} mm {side} lung nodule."),
    "Edema": ("{sev} pulmonary edema.", "Interstitial edema with pulmonary vascular congestion.",
              "Perihilar haziness and Kerley B lines consistent with edema."),
    "Consolidation": ("Focal consolidation in the {side} lower lobe.", "Dense {side} basilar consolidation with air bronchograms.",
                      "{Side} lower lobe consolidation."),
    "Pneumonia": ("Findings consistent with {side} lower lobe pneumonia.", "{Side} basilar pneumonia.",
                  "Airspace disease compatible with pneumonia in the clinical setting of fever."),
    "Atelectasis": ("{Side} basilar atelectasis.", "Plate-like atelectasis at the {side} base.",
                    "Linear {side} lower zone atelectasis."),
    "Pneumothorax": ("{Size} {side} apical pneumothorax.", "There is a {size} {side} pneumothorax.",
                     "{Side} pneumothorax with visible pleural edge and absent lung markings laterally."),
    "Pleural Effusion": ("{Size} {side} pleural effusion.", "Blunting of the {side} costophrenic angle from a {size} effusion.",
                         "{Size} {side} effusion with basilar meniscus."),
    "Pleural Other": ("{Side} pleural thickening.", "Calcified {side} pleural plaques.", "{Side} apical pleural thickening."),
    "Fracture": ("Nondisplaced fracture of the {side} {nth} rib.", "Healing {side} {nth} rib fracture.",
                 "Acute {side} {nth} rib fracture."),
    "Support Devices": ("Endotracheal tube tip 4 cm above the carina.", "Right IJ central venous catheter tip in the SVC.",
                        "Left chest wall pacemaker with leads in the right heart.",
                        "Enteric tube courses below the diaphragm.", "ECG leads project over the chest."),
}
HEDGED_PHRASES: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("Possible mediastinal widening, likely projectional.",),
    "Cardiomegaly": ("The heart may be enlarged.", "Borderline cardiomegaly."),
    "Lung Opacity": ("Possible faint {side} basilar opacity.",),
    "Lung Lesion": ("Questionable nodule in the {side} {zone} lung.", "Cannot exclude a {side} lung nodule."),
    "Edema": ("Possible mild interstitial edema.",),
    "Consolidation": ("Possible {side} basilar consolidation.",),
    "Pneumonia": ("Cannot exclude early pneumonia.", "Findings may represent early pneumonia."),
    "Atelectasis": ("Possible {side} basilar atelectasis.",),
    "Pneumothorax": ("Cannot exclude a small {side} apical pneumothorax.", "Questionable small {side} pneumothorax."),
    "Pleural Effusion": ("Possible small {side} pleural effusion.", "Trace {side} effusion is not excluded."),
    "Pleural Other": ("Possible {side} pleural thickening.",),
    "Fracture": ("Possible {side} {nth} rib fracture.",),
    "Support Devices": ("Possible retained catheter fragment.",),
}
NEGATED_PHRASES: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("The cardiomediastinal silhouette is normal.", "No mediastinal widening."),
    "Cardiomegaly": ("Heart size is normal.", "No cardiomegaly."),
    "Lung Opacity": ("The lungs are clear.", "No focal opacity."),
    "Lung Lesion": ("No suspicious pulmonary nodule.", "No lung mass."),
    "Edema": ("No pulmonary edema.", "No evidence of edema."),
    "Consolidation": ("No focal consolidation.", "There is no consolidation."),
    "Pneumonia": ("No evidence of pneumonia.",),
    "Atelectasis": ("No atelectasis.",),
    "Pneumothorax": ("No pneumothorax.", "There is no pneumothorax.", "Pneumothorax is not seen."),
    "Pleural Effusion": ("No pleural effusion.", "Costophrenic angles are sharp.", "No effusion."),
    "Pleural Other": ("No pleural thickening.",),
    "Fracture": ("No acute fracture.", "No displaced rib fracture."),
    "Support Devices": ("The endotracheal tube has been removed.",),
}
# The negatives a reader routinely states in a normal report.
ROUTINE_NEGATIVES = ("Pneumothorax", "Pleural Effusion", "Consolidation", "Edema", "Cardiomegaly")
TERSE_REPORTS = (
    "FINDINGS: Limited portable study. Comparison limited. IMPRESSION: No significant interval change.",
    "FINDINGS: Single frontal view. Rotated, low lung volumes. IMPRESSION: Limited study; see prior.",
    "FINDINGS: Portable AP view, comparison limited. IMPRESSION: Stable appearance of the chest.",
)
HISTORY_HINTS: dict[str, tuple[str, ...]] = {
    "Pneumothorax": ("Trauma, fall from ladder, right chest pain.", "Sudden pleuritic chest pain and dyspnea.",
                     "Status post line placement, evaluate for pneumothorax."),
    "Pneumonia": ("Fever and productive cough for three days.", "Cough, fever, elevated white count."),
    "Consolidation": ("Fever and cough.", "Hypoxia and crackles at the base."),
    "Edema": ("Known CHF with increasing dyspnea and leg swelling.", "Fluid overload on dialysis."),
    "Cardiomegaly": ("History of heart failure.", "Dyspnea on exertion, known cardiomyopathy."),
    "Pleural Effusion": ("Dyspnea, decreased breath sounds at the base.", "Known malignancy, dyspnea."),
    "Fracture": ("Fall with chest wall tenderness.", "Motor vehicle collision, rib pain."),
    "Support Devices": ("Intubated patient, check tube position.", "Line placement.", "Pacemaker check."),
    "Lung Lesion": ("Follow-up of known pulmonary nodule.", "Weight loss, smoker."),
    "Atelectasis": ("Postoperative day two, low oxygen saturation.",),
    "Enlarged Cardiomediastinum": ("Chest pain radiating to the back.",),
}
GENERIC_HISTORIES = ("Shortness of breath.", "Chest pain.", "Cough.", "Preoperative evaluation.",
                     "Evaluate for pneumonia.", "Dyspnea.", "Routine follow-up.")
FAKE_FIRST = ("Zorblax", "Quimby", "Fennimore", "Ottoline", "Barnaby", "Wibblette", "Grizelda", "Thaddeus")
FAKE_LAST = ("Fakename", "Testperson", "Nonesuch", "Placeholder", "Examplesmith", "Mockingham", "Dummington")


@dataclass
class ReportDraft:
    report: str
    history: str
    uncertain: list[str] = field(default_factory=list)  # findings the report hedged on
    planted_phi: list[str] = field(default_factory=list)  # fake identifiers written into the texts


def _fill(template: str, rng: np.random.Generator) -> str:
    side, zone = str(rng.choice(_SIDES)), str(rng.choice(_ZONES))
    size = str(rng.choice(["small", "moderate", "large"]))
    values = {"side": side, "Side": side.capitalize(), "zone": zone, "size": size, "Size": size.capitalize(),
              "sev": str(rng.choice(["Mild", "Moderate", "Severe"])), "mm": str(int(rng.integers(6, 25))),
              "nth": str(rng.choice(["fourth", "fifth", "sixth", "seventh", "eighth"]))}
    return template.format(**values)


def fake_name(rng: np.random.Generator) -> tuple[str, str]:
    return str(rng.choice(FAKE_FIRST)), str(rng.choice(FAKE_LAST))


def write_report(positives: list[str], style: str, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A report for the true `positives` in a style: full, partial or terse.

    Returns the report and the findings it hedged on (the data set's uncertain labels)."""
    if style == "terse":
        return str(rng.choice(TERSE_REPORTS)), []
    chance = {"full": 0.9, "partial": 0.45}[style]
    sentences, impression, hedged = [], [], []
    for name in positives:
        if rng.random() >= chance:
            if rng.random() < 0.15 and name in NEGATED_PHRASES:  # the reader missed it
                sentences.append(_fill(str(rng.choice(NEGATED_PHRASES[name])), rng))
            continue
        if rng.random() < 0.1 and name in HEDGED_PHRASES:
            sentences.append(_fill(str(rng.choice(HEDGED_PHRASES[name])), rng))
            hedged.append(name)
            continue
        sentence = _fill(str(rng.choice(POSITIVE_PHRASES[name])), rng)
        sentences.append(sentence)
        impression.append(sentence)
    for name in ROUTINE_NEGATIVES:
        if name not in positives and rng.random() < (0.7 if style == "full" else 0.35):
            sentences.append(_fill(str(rng.choice(NEGATED_PHRASES[name])), rng))
    for name in HEDGED_PHRASES:  # an occasional hedge about something absent
        if name not in positives and name != "Support Devices" and rng.random() < 0.01:
            sentences.append(_fill(str(rng.choice(HEDGED_PHRASES[name])), rng))
            hedged.append(name)
    order = rng.permutation(len(sentences))
    findings = " ".join(sentences[i] for i in order) or "Single frontal view of the chest."
    summary = " ".join(impression[:3]) if impression else "No acute cardiopulmonary process."
    return f"FINDINGS: {findings}\nIMPRESSION: {summary}", sorted(set(hedged))


def write_history(positives: list[str], rng: np.random.Generator) -> str:
    hinted = [name for name in positives if name in HISTORY_HINTS]
    if hinted and rng.random() < 0.6:
        return _fill(str(rng.choice(HISTORY_HINTS[str(rng.choice(hinted))])), rng)
    return str(rng.choice(GENERIC_HISTORIES))


def plant_text_phi(report: str, history: str, rng: np.random.Generator) -> tuple[str, str, list[str]]:
    """Write clearly fake identifiers into some texts, as real reports carry real ones."""
    first, last = fake_name(rng)
    doctor_first, doctor_last = fake_name(rng)
    mrn = f"{int(rng.integers(10**7, 10**8))}"
    phone = f"(555) 555-01{int(rng.integers(10, 99))}"
    date = f"{int(rng.integers(1, 12))}/{int(rng.integers(1, 28))}/20{int(rng.integers(10, 24))}"
    history = f"Patient {first} {last}, MRN {mrn}. {history}"
    report = (f"{report}\nFindings discussed with Dr. {doctor_first} {doctor_last} at {phone} on {date}.")
    return report, history, [first, last, doctor_first, doctor_last, mrn, phone, date]


def write_texts(positives: list[str], rng: np.random.Generator, *, phi_rate: float = 0.3) -> ReportDraft:
    style = str(rng.choice(["full", "partial", "terse"], p=[0.4, 0.3, 0.3]))
    report, hedged = write_report(positives, style, rng)
    history = write_history(positives, rng)
    planted: list[str] = []
    if rng.random() < phi_rate:
        report, history, planted = plant_text_phi(report, history, rng)
    return ReportDraft(report=report, history=history, uncertain=hedged, planted_phi=planted)
