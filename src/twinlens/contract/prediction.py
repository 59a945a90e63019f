"""What the predictor returns and what `decide()` reads. Torch-free, JSON-friendly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from twinlens.contract.schema import TaskKind


@dataclass
class HeadPrediction:
    task: str
    kind: TaskKind
    # Calibrated probability per label (multiclass sums to 1; multilabel independent).
    probabilities: dict[str, float] = field(default_factory=dict)
    # Multiclass: the top label. Multilabel: labels at or above their threshold.
    label: str | None = None
    labels: list[str] = field(default_factory=list)
    value: float | None = None  # regression output
    confidence: float | None = None  # probability of the top label (multiclass)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return ranked[:k]


@dataclass
class Prediction:
    heads: dict[str, HeadPrediction]
    # Share of the decision each present modality carries (masking it out), sums to 1.
    contributions: dict[str, float] = field(default_factory=dict)
    # A case of several images: each image's share of what the images decided (masking it
    # alone), keyed by its view ("lateral") or position ("image 2"); sums to 1.
    image_contributions: dict[str, float] = field(default_factory=dict)
    inputs_present: list[str] = field(default_factory=list)
    model_version: str | None = None
    zero_shot: bool = False
    # Anything a plugin's preprocessing wants to show (OCR text, gate warnings...).
    extras: dict[str, Any] = field(default_factory=dict)
    # The case's vectors from the pass that predicted ("fused", and one per present
    # modality; numpy float32): stored for similar-case search, never in the result JSON.
    embeddings: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("embeddings")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Prediction":
        heads = {name: HeadPrediction(**head) for name, head in data["heads"].items()}
        return cls(**{**data, "heads": heads})
