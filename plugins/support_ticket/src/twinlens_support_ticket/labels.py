"""The support-ticket label schema: what the model predicts, in plain language.

The descriptions are shown to agents and customers, and they are what the zero-shot
classifier compares ticket text with before any labelled data exists, so they name the
words people actually use ("shattered", "dropped in water", "puffy") rather than jargon.
The fault labels and their descriptions come from the fault table (`faults`).
"""

from __future__ import annotations

from twinlens.contract.schema import Label, LabelSchema, Task

from twinlens_support_ticket.faults import FAULT_SPECS

FAULT_LABELS: tuple[Label, ...] = tuple(Label(name=spec.name, description=spec.description) for spec in FAULT_SPECS)

SEVERITY_LABELS: tuple[Label, ...] = (
    Label(
        name="low",
        description="Low: cosmetic scratches or dents, a question, or a minor glitch; the device works normally.",
    ),
    Label(
        name="medium",
        description="Medium: something is broken or keeps failing, like a cracked screen, a loose charging port, "
        "a missing part or a recurring error, but the device can still be used.",
    ),
    Label(
        name="high",
        description="High: the device cannot be used and needs a repair: it got wet, will not turn on, "
        "will not boot or will not charge at all.",
    ),
    Label(
        name="critical",
        description="Critical: a safety risk: a swollen or bulging battery, smoke, a burning smell, "
        "overheating or fire.",
    ),
)

FAULT_TASK = Task(
    name="fault",
    kind="multiclass",
    labels=FAULT_LABELS,
    description="What is wrong with the product.",
)
SEVERITY_TASK = Task(
    name="severity",
    kind="multiclass",
    labels=SEVERITY_LABELS,
    description="How bad it is for the customer and how urgently it must be handled.",
)

LABEL_SCHEMA = LabelSchema(tasks=(FAULT_TASK, SEVERITY_TASK))
FAULTS: tuple[str, ...] = tuple(label.name for label in FAULT_LABELS)
SEVERITIES: tuple[str, ...] = tuple(label.name for label in SEVERITY_LABELS)
