"""Every fault the plugin knows, one row each: its label, what support does about it, and
how generated tickets show it.

The label schema (`labels`), the decision rules (`decision`) and the ticket generator
(`generate`) all read this table, so adding a fault is adding one `FaultSpec` here. Its
fields have no defaults where a consumer needs a value (a missing action or team is a
TypeError when this module is imported), and values the consumers do not know are
refused when they are imported: `decision` runs `check_fault_table`, `generate.plan` its
own check of the photo hints.

Order matters: it is the order of the labels in the schema (and of a model's outputs),
and the generator balances and draws faults in it, so generated data sets stay the same
for a seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

RGB = tuple[int, int, int]
# The fault that means a safety risk: it escalates whatever else a ticket says.
SAFETY_FAULT = "swollen_battery"
OVERLAYS = ("cracks", "stains", "scratches")
DEFECTS = ("bulge", "missing", "broken_port")  # shape changes drawn with the device


class ScreenMessage(NamedTuple):
    """An on-screen message that shows the fault in a photo, read from it by OCR."""

    title: str
    lines: tuple[str, ...]
    # Prefixes avoid the letters O, I and L, which OCR confuses with 0 and 1 as people do.
    code_prefix: str
    severe: bool  # the message means the device is unusable


@dataclass(frozen=True)
class TicketWording:
    """How customers write about the fault; `{dev}`, `{part}`, `{when}`... are filled in."""

    specific: tuple[str, ...]  # sentences that name the fault, one of many ways
    subjects: tuple[str, ...]
    # Whether a vague ticket may say only "it stopped working": not when the device works.
    vague_says_stopped: bool = True
    # Cue sentences; a fault with either takes its severity from them (see below).
    unusable: tuple[str, ...] = ()
    minor: tuple[str, ...] = ()
    may_mention_hazard: bool = False  # burning, smoke: a liquid, a port or a battery can short


@dataclass(frozen=True)
class PhotoHints:
    """How a generated photo shows the fault."""

    devices: tuple[str, ...]  # drawn uniformly, so a repeated device is drawn more often
    overlay: str | None = None  # one of OVERLAYS, laid over the drawn device
    defect: str | None = None  # one of DEFECTS
    # The view that shows the damage where the device has it (else a random view that is
    # not the port), and views for particular devices.
    damage_view: str | None = None
    damage_view_by_device: dict[str, str] = field(default_factory=dict)
    puddle_share: float = 0.0  # of damage photos with spilled liquid around the device
    # Share of photo evidence on a device with a screen that is a message, not damage.
    screen_share: float = 0.0
    messages: tuple[ScreenMessage, ...] = ()
    message_accent: RGB = (200, 40, 40)
    crash_screens: bool = False  # a laptop may show its message as a full-screen crash


@dataclass(frozen=True)
class FaultSpec:
    name: str
    # Shown to agents and customers, and what the zero-shot classifier compares ticket
    # text with before any labelled data exists, so it names the words people use
    # ("shattered", "dropped in water", "puffy") rather than jargon.
    description: str
    action: str  # what support does, before severity and product adjust it
    team: str
    default_severity: str  # when a model has no severity head; the generator's base
    accidental: bool  # covered only by an extended (accident) plan
    wording: TicketWording
    photo: PhotoHints
    # Tickets of this class have nothing wrong that a photo could show: their photos stay
    # clean and there is nothing for a warranty to cover.
    shows_no_fault: bool = False
    # Replaces the action when the severity is high or critical.
    severe_action: str | None = None
    # Inside the return window the unit is replaced, as for any fault needing a repair.
    replace_unit_when_new: bool = False

    @property
    def severity_follows_context(self) -> bool:
        """A fault whose tickets can say the device is unusable or the problem minor takes
        its severity from what they say; the others always have their default severity."""
        return bool(self.wording.unusable or self.wording.minor)


FAULT_SPECS: tuple[FaultSpec, ...] = (
    FaultSpec(
        name="cracked_screen",
        description="The screen or display glass is cracked, shattered or broken, with cracks spreading "
        "across it, often after the device was dropped.",
        action="replace_part", team="hardware_repair", default_severity="medium", accidental=True,
        wording=TicketWording(
            specific=(
                "I dropped my {dev} and now the screen is cracked all over.",
                "The display glass shattered when it fell off the table {when}.",
                "There is a big crack across the screen, spiderweb pattern from the corner.",
                "screen cracked after a drop, glass is splintered",
                "My {dev} slipped out of my hand and the screen broke.",
                "The front glass has cracks running across it since {when}.",
                "Cracked display. It fell face down on the pavement.",
                "the screen got smashed, lines everywhere on the glass",
                "The touchscreen glass is broken, there are cracks spreading from where it hit the floor.",
            ),
            subjects=("Cracked screen", "screen broken", "Display shattered after drop", "broken glass"),
            unusable=("The touch screen doesn't respond anymore.", "I can't see anything on it, can't use it at all."),
            minor=("It's just a small crack in the corner, it still works fine.",),
        ),
        photo=PhotoHints(devices=("phone", "phone", "tablet", "laptop", "watch"), overlay="cracks", damage_view="front"),
    ),
    FaultSpec(
        name="water_damage",
        description="Liquid got into the device: it was dropped in water, rain or a spilled drink, and now "
        "shows stains, moisture, corrosion or a liquid-detected warning.",
        action="repair_rma", team="hardware_repair", default_severity="high", accidental=True,
        wording=TicketWording(
            specific=(
                "I dropped my {dev} in the sink {when} and now it acts strange.",
                "Spilled coffee all over it {when}.",
                "It got soaked in the rain on my way home.",
                "my kid dropped it in the bath, there is water inside the screen",
                "Fell into the pool {when}. I dried it with rice but no luck.",
                "Someone knocked a glass of water over it on my desk.",
                "There is moisture / fog under the glass after I went swimming with it.",
                "liquid damage: tea spilled on the {dev} and there are stains now",
                "It says liquid detected and there are water marks inside.",
            ),
            subjects=("Water damage", "dropped in water", "liquid spill", "wet {dev}"),
            may_mention_hazard=True,
        ),
        photo=PhotoHints(
            devices=("phone", "tablet", "laptop", "headphones", "watch"), overlay="stains", puddle_share=0.6,
            screen_share=0.3, message_accent=(30, 90, 190),
            messages=(
                ScreenMessage("Liquid detected", ("Unplug the cable.", "Moisture in port."), "LQ", False),
                ScreenMessage("Moisture warning", ("Water was detected", "in the device."), "WET", False),
            ),
        ),
    ),
    FaultSpec(
        name=SAFETY_FAULT,
        description="The battery is swollen or bulging: the case is puffy, bent or pushed apart, or the "
        "screen lifts off the frame. A fire risk.",
        action="escalate_safety", team="product_safety", default_severity="critical", accidental=False,
        wording=TicketWording(
            specific=(
                "The back of my {dev} is bulging out, it doesn't sit flat anymore.",
                "The battery seems swollen, the screen is lifting away from the frame.",
                "case is puffy and pushed apart, it rocks when I put it on the table",
                "The {dev} has swollen up, there's a gap between the screen and the body.",
                "The battery is bulging and the case is bending outward.",
                "the screen is popping off because something inside is swelling",
                "My {dev} got thicker, the back cover is bowed and cracked open from inside.",
                "Looks like the battery expanded, the case is pushed up from inside.",
            ),
            subjects=("Battery swollen", "{dev} bulging", "case pushed apart", "swelling battery"),
            may_mention_hazard=True,
        ),
        photo=PhotoHints(
            devices=("phone", "phone", "tablet", "laptop"), defect="bulge", screen_share=0.25,
            messages=(
                ScreenMessage("Battery service", ("Battery is swelling.", "Stop charging now."), "BAT", True),
                ScreenMessage("Battery warning", ("Battery health is", "critical. Service."), "BAT", True),
            ),
        ),
    ),
    FaultSpec(
        name="broken_port",
        description="The charging port, USB or headphone socket is broken, bent, loose or damaged, so the "
        "cable does not fit, stay in or charge.",
        action="repair_rma", team="hardware_repair", default_severity="medium", accidental=False,
        wording=TicketWording(
            specific=(
                "The charging port is loose and the cable falls out.",
                "USB-C port is bent, the charger doesn't fit anymore.",
                "I have to wiggle the cable in the charging socket to get it to charge.",
                "the port broke, the pins inside are bent",
                "Charger won't stay in the port, it's damaged.",
                "The charging connector socket is broken, it only charges at a certain angle.",
                "Something broke inside the charging port when I pulled the cable out {when}.",
                "port is wobbly and the cable won't click in",
            ),
            subjects=("Charging port broken", "port damaged", "cable won't stay in", "charger port loose"),
            unusable=("It won't charge at all now, the battery is dead.", "Can't charge it anymore so it's useless."),
            minor=("It still charges if I hold the cable, just annoying.",),
            may_mention_hazard=True,
        ),
        photo=PhotoHints(
            devices=("phone", "tablet", "laptop", "headphones"), defect="broken_port", damage_view="port",
            screen_share=0.3,
            messages=(
                ScreenMessage("Accessory error", ("Charging port fault.", "Cannot charge."), "PRT", False),
                ScreenMessage("USB port error", ("Connector damaged.", "Charging paused."), "USB", False),
            ),
        ),
    ),
    FaultSpec(
        name="cosmetic_damage",
        description="Only cosmetic damage: scratches, scuffs, small dents or worn paint on the outside; the "
        "device still works normally.",
        action="self_help_article", team="customer_care", default_severity="low", accidental=True,
        wording=TicketWording(
            specific=(
                "There are scratches all over the back of my {dev}.",
                "It works fine, it just has a few scuffs and a small dent on the corner.",
                "the paint is wearing off and the case is scratched",
                "Cosmetic issue only: scratches on the case, everything still works.",
                "My {dev} arrived with scratches and a scuffed corner.",
                "A small dent and some scratches appeared on the housing, no functional problem.",
                "The finish is scratched up after only {months} months of normal use.",
                "lots of fine scratches on the body, looks used, works ok",
            ),
            subjects=("Scratches on case", "cosmetic damage", "dent and scratches", "scuffed {dev}"),
            vague_says_stopped=False,
        ),
        photo=PhotoHints(devices=("phone", "tablet", "laptop", "headphones", "watch"), overlay="scratches",
                         damage_view="back"),
    ),
    FaultSpec(
        name="missing_part",
        description="A part or accessory is missing: a key, ear cushion, cover, stylus, cable or charger "
        "was not in the box or fell off.",
        action="replace_part", team="fulfilment", default_severity="medium", accidental=False,
        replace_unit_when_new=True,  # it arrived incomplete
        wording=TicketWording(
            specific=(
                "My {dev} came without {part}.",
                "{part} fell off and I can't find it anywhere.",
                "The package did not include {part}.",
                "Missing: {part}.",
                "missing part - {part} not in the box",
                "After {months} months {part} came off and got lost.",
                "I'm missing {part} since {when}.",
                "{part} is gone, there is just the empty spot left",
            ),
            subjects=("Missing part", "{part} missing", "missing {part}", "part missing"),
            vague_says_stopped=False,
            unusable=("I can't use it without it.", "Useless without the missing part."),
            minor=("Not urgent, I can manage without it for now.",),
        ),
        # Where the part a photo shows missing (the device's first in generate.tickets.PARTS) is seen.
        photo=PhotoHints(
            devices=("phone", "tablet", "laptop", "headphones", "watch"), defect="missing",
            damage_view_by_device={"phone": "back", "tablet": "back", "laptop": "front", "headphones": "front"},
        ),
    ),
    FaultSpec(
        name="software_error",
        description="A software problem: an error message or error code on screen, an app that crashes or "
        "freezes, a failed update, or a device that will not boot.",
        action="self_help_article", team="software_support", default_severity="medium", accidental=False,
        severe_action="repair_rma",  # a device that will not boot is not fixed by an article
        wording=TicketWording(
            specific=(
                "An error message pops up every time I open the app.",
                "The {dev} keeps crashing after the latest update.",
                "It's stuck on the boot logo since the update {when}.",
                "The app freezes and then I get an error code on the screen.",
                "Software update failed and now it shows an error.",
                "keeps restarting by itself with a system error",
                "I get a blue crash screen with a stop code.",
                "the settings app crashes, says something went wrong, error code on screen",
                "Firmware update did not install, it says update failed.",
            ),
            subjects=("Error message", "app crashing", "update failed", "error code on screen"),
            unusable=("It won't boot at all.", "I can't get past the error, can't use it at all."),
            minor=("It's only a small glitch, not a big deal.",),
        ),
        photo=PhotoHints(
            devices=("phone", "phone", "tablet", "laptop", "watch"), screen_share=1.0, crash_screens=True,
            messages=(
                ScreenMessage("System Error", ("The app stopped", "unexpectedly."), "E", False),
                ScreenMessage("Update failed", ("The update could", "not be installed."), "UPD", False),
                ScreenMessage("Not responding", ("Settings is not", "responding."), "ERR", False),
                ScreenMessage("Boot failure", ("No bootable system", "was found."), "BF", True),
                ScreenMessage("Kernel panic", ("The system must", "restart."), "SYS", True),
            ),
        ),
    ),
    FaultSpec(
        name="no_visible_fault",
        description="No fault can be seen: the device looks normal and undamaged; a question, a setting, "
        "or a problem that cannot be confirmed.",
        action="self_help_article", team="customer_care", default_severity="low", accidental=False,
        shows_no_fault=True,
        wording=TicketWording(
            specific=(
                "How do I turn on the battery saver on my {dev}?",
                "Everything looks fine, I just want to check if my warranty is still valid.",
                "It was acting weird earlier but now it seems ok. Is there anything I should do?",
                "Question about pairing my {dev} with bluetooth.",
                "Is it normal that it gets a bit warm while charging? No other problem.",
                "I can't find the setting to change the language.",
                "My son says it's broken but I can't see anything wrong with it.",
                "Not sure anything is wrong, it just feels slower than before.",
            ),
            subjects=("Question", "general question", "warranty check", "how do I..."),
        ),
        photo=PhotoHints(devices=("phone", "tablet", "laptop", "headphones", "watch")),
    ),
)
FAULTS: tuple[str, ...] = tuple(spec.name for spec in FAULT_SPECS)
FAULTS_BY_NAME: dict[str, FaultSpec] = {spec.name: spec for spec in FAULT_SPECS}


class FaultTableError(ValueError):
    """A FaultSpec names something its consumers do not know."""


def fault_spec(name: str) -> FaultSpec:
    """The row of a fault label; an unknown label is an error, never a silent default."""
    try:
        return FAULTS_BY_NAME[name]
    except KeyError:
        raise FaultTableError(f"unknown fault {name!r}; the faults are {FAULTS}") from None


def check_fault_table(specs: tuple[FaultSpec, ...], *, actions: Collection[str], severities: Collection[str]) -> None:
    """Raise FaultTableError listing every row that names an unknown action, severity,
    overlay or defect, and every name used twice."""
    problems = [f"fault {name!r} is listed twice" for name in _repeated(spec.name for spec in specs)]
    for spec in specs:
        problems += [f"{spec.name}: {problem}" for problem in _row_problems(spec, actions, severities)]
    if SAFETY_FAULT not in {spec.name for spec in specs}:
        problems.append(f"the safety fault {SAFETY_FAULT!r} has no row")
    if problems:
        raise FaultTableError("; ".join(problems))


def _row_problems(spec: FaultSpec, actions: Collection[str], severities: Collection[str]) -> list[str]:
    problems = []
    for column, value in (("action", spec.action), ("severe_action", spec.severe_action)):
        if value is not None and value not in actions:
            problems.append(f"{column} {value!r} is not one of {tuple(actions)}")
    if spec.default_severity not in severities:
        problems.append(f"default_severity {spec.default_severity!r} is not one of {tuple(severities)}")
    if spec.photo.overlay not in (None, *OVERLAYS):
        problems.append(f"overlay {spec.photo.overlay!r} is not one of {OVERLAYS}")
    if spec.photo.defect not in (None, *DEFECTS):
        problems.append(f"defect {spec.photo.defect!r} is not one of {DEFECTS}")
    if not spec.wording.specific or not spec.wording.subjects or not spec.photo.devices:
        problems.append("needs specific sentences, subjects and devices for generated tickets")
    return problems


def _repeated(names: Iterable[str]) -> list[str]:
    return [name for name, count in Counter(names).items() if count > 1]
