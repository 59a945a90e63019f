"""The support-ticket label schema: what the model predicts, in plain language.

The descriptions are shown to agents and customers, and they are what the zero-shot
classifier compares ticket text with before any labelled data exists, so they name the
words people actually use ("shattered", "dropped in water", "puffy") rather than jargon.
"""

from __future__ import annotations

from twinlens.contract.schema import Label, LabelSchema, Task

FAULT_LABELS: tuple[Label, ...] = (
    Label(
        name="cracked_screen",
        description="The screen or display glass is cracked, shattered or broken, with cracks spreading "
        "across it, often after the device was dropped.",
    ),
    Label(
        name="water_damage",
        description="Liquid got into the device: it was dropped in water, rain or a spilled drink, and now "
        "shows stains, moisture, corrosion or a liquid-detected warning.",
    ),
    Label(
        name="swollen_battery",
        description="The battery is swollen or bulging: the case is puffy, bent or pushed apart, or the "
        "screen lifts off the frame. A fire risk.",
    ),
    Label(
        name="broken_port",
        description="The charging port, USB or headphone socket is broken, bent, loose or damaged, so the "
        "cable does not fit, stay in or charge.",
    ),
    Label(
        name="cosmetic_damage",
        description="Only cosmetic damage: scratches, scuffs, small dents or worn paint on the outside; the "
        "device still works normally.",
    ),
    Label(
        name="missing_part",
        description="A part or accessory is missing: a key, ear cushion, cover, stylus, cable or charger "
        "was not in the box or fell off.",
    ),
    Label(
        name="software_error",
        description="A software problem: an error message or error code on screen, an app that crashes or "
        "freezes, a failed update, or a device that will not boot.",
    ),
    Label(
        name="no_visible_fault",
        description="No fault can be seen: the device looks normal and undamaged; a question, a setting, "
        "or a problem that cannot be confirmed.",
    ),
)

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
