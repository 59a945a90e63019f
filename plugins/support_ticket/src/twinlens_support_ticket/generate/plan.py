"""What each generated ticket is: fault, which inputs show it, device, view, severity, product.

The evidence mode is what makes fusion matter. "both": the photo shows the fault and the
text names it. "photo": the text is vague ("it stopped working") and only the photo (its
damage, or the message on its screen read by OCR) shows the fault. "text": the photo looks
fine and only the words say what happened. A ticket with no visible fault has a clean
photo and either a vague or a no-fault text.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from twinlens_support_ticket.faults import FAULT_SPECS, FAULTS, FaultSpec, FaultTableError, fault_spec
from twinlens_support_ticket.generate import messages
from twinlens_support_ticket.generate.devices import VIEWS, Defects
from twinlens_support_ticket.generate.screens import ScreenContent

EVIDENCE_MODES = (("both", 0.5), ("photo", 0.25), ("text", 0.25))
DEVICES_FOR = {spec.name: spec.photo.devices for spec in FAULT_SPECS}
SCREENED = ("phone", "tablet", "laptop", "watch")
PRODUCTS = {
    "phone": ("Nimbus", ("Nimbus 5", "Nimbus 6", "Nimbus 6 Pro")),
    "tablet": ("Slate", ("Slate 10", "Slate Mini", "Slate Pro 12")),
    "laptop": ("Aero", ("Aero 13", "Aero 15 Pro", "Aero Book")),
    "headphones": ("Pulse", ("Pulse ANC", "Pulse Sport", "Pulse Studio")),
    "watch": ("Tick", ("Tick 2", "Tick Active")),
}

# Generated tickets are dated relative to this day, so a data set is the same whatever day
# it is generated on.
REFERENCE_DATE = dt.date(2025, 6, 30)


def check_photo_hints(specs: tuple[FaultSpec, ...] = FAULT_SPECS) -> None:
    """Raise FaultTableError for devices and views the generator cannot draw, and for
    screen messages no device of the fault could show."""
    problems = []
    for spec in specs:
        photo = spec.photo
        problems += [f"{spec.name}: no device {device!r}" for device in photo.devices if device not in VIEWS]
        problems += [f"{spec.name}: a {device} has no {view!r} view" for device, view in photo.damage_view_by_device.items()
                     if view not in VIEWS.get(device, ())]
        if photo.screen_share > 0 and not (photo.messages and set(photo.devices) & set(SCREENED)):
            problems.append(f"{spec.name}: screen_share needs messages and a device with a screen")
    if problems:
        raise FaultTableError("; ".join(problems))


check_photo_hints()  # at import: a row the generator cannot draw fails before any ticket


@dataclass
class TicketPlan:
    ticket_id: str
    fault: str
    evidence: str
    device: str
    view: str
    defects: Defects = field(default_factory=Defects)
    overlay: str | None = None  # cracks | stains | scratches
    puddle: bool = False  # spilled liquid on the surface around the device
    screen: ScreenContent | None = None
    close_up: bool = False  # framed on the screen so its message is legible
    has_photo: bool = True
    has_description: bool = True
    unusable: bool = False
    minor: bool = False
    hazard: bool = False
    severity: str = "medium"
    product: dict[str, str] = field(default_factory=dict)

    @property
    def specific_text(self) -> bool:
        return self.evidence in ("both", "text", "none-specific")  # none-*: tickets where nothing is wrong


def plan_ticket(ticket_id: str, fault: str, rng: random.Random) -> TicketPlan:
    spec = fault_spec(fault)
    device = rng.choice(spec.photo.devices)
    evidence = _evidence(spec, rng)
    plan = TicketPlan(ticket_id=ticket_id, fault=fault, evidence=evidence, device=device, view="front")
    severe_message = False
    if evidence in ("both", "photo"):
        severe_message = _show_fault(plan, rng)
    else:
        _clean_photo(plan, rng)
    _cues(plan, rng)
    plan.severity = severity(fault, unusable=plan.unusable or severe_message, minor=plan.minor, hazard=plan.hazard)
    plan.has_photo = not (evidence in ("text", "none-specific") and rng.random() < 0.08)
    plan.has_description = not (evidence == "photo" and rng.random() < 0.1)
    plan.product = product(device, rng)
    return plan


def _evidence(spec: FaultSpec, rng: random.Random) -> str:
    if spec.shows_no_fault:
        return rng.choices(["none-vague", "none-specific"], [0.4, 0.6])[0]
    modes, weights = zip(*EVIDENCE_MODES)
    return rng.choices(modes, weights)[0]


def _show_fault(plan: TicketPlan, rng: random.Random) -> bool:
    """Make the photo show the fault; returns whether its message means 'unusable'."""
    photo, device = fault_spec(plan.fault).photo, plan.device
    # Rolled for every device with a screen even at a share of 0, and the puddle only
    # where a fault can have one: this order of draws makes a seed's data set the one the
    # evaluation figures were measured on.
    if device in SCREENED and rng.random() < photo.screen_share:
        crash = device == "laptop" and rng.random() < 0.5
        plan.screen, severe = messages.fault_message(plan.fault, rng, crash_screen=crash)
        plan.view, plan.close_up = "front", True
        return severe
    plan.view = _damage_view(photo.damage_view_by_device.get(device, photo.damage_view), device, rng)
    plan.overlay = photo.overlay
    plan.defects = Defects(**{photo.defect: True}) if photo.defect else Defects()
    plan.puddle = photo.puddle_share > 0 and rng.random() < photo.puddle_share
    # No close-up notice here: framing on the screen would crop the damage out of the photo.
    _idle_screen(plan, rng, notices=False)
    return False


def _damage_view(preferred: str | None, device: str, rng: random.Random) -> str:
    """The view that shows the damage where the device has it; else any but the port."""
    if preferred in VIEWS[device]:
        return preferred
    return rng.choice([view for view in VIEWS[device] if view != "port"])


def _clean_photo(plan: TicketPlan, rng: random.Random) -> None:
    plan.view = rng.choice(VIEWS[plan.device])
    _idle_screen(plan, rng)


def _idle_screen(plan: TicketPlan, rng: random.Random, *, notices: bool = True) -> None:
    """What an undamaged or physically damaged screen shows: nothing about the fault."""
    if plan.view != "front" or plan.device not in SCREENED:
        return
    kind = rng.choices(["off", "home", "lock", "benign"], [0.3, 0.25, 0.25, 0.2 if notices else 0.0])[0]
    if kind == "benign":
        plan.screen, plan.close_up = messages.benign_message(rng), True
    else:
        plan.screen = ScreenContent(kind=kind)


def _cues(plan: TicketPlan, rng: random.Random) -> None:
    spec = fault_spec(plan.fault)
    if not plan.specific_text or spec.shows_no_fault:
        return
    wording, roll = spec.wording, rng.random()
    if wording.unusable and roll < 0.3:
        plan.unusable = True
    elif wording.minor and roll > 0.8:
        plan.minor = True
    if wording.may_mention_hazard and rng.random() < 0.2:
        plan.hazard = True


def severity(fault: str, *, unusable: bool, minor: bool, hazard: bool) -> str:
    """Severity from the fault and its context: the rule the generated labels follow."""
    spec = fault_spec(fault)
    if hazard:
        return "critical"
    if not spec.severity_follows_context:
        return spec.default_severity
    if unusable:
        return "high"
    return "low" if minor else spec.default_severity


def product(device: str, rng: random.Random) -> dict[str, str]:
    if rng.random() < 0.1:
        return {}  # many tickets come without product details
    line, models = PRODUCTS[device]
    bought = REFERENCE_DATE - dt.timedelta(days=rng.randint(3, 1100))
    age = (REFERENCE_DATE - bought).days
    if age < 365:
        warranty = "in_warranty"
    elif age < 730 and rng.random() < 0.35:
        warranty = "extended"
    else:
        warranty = "expired"
    return {"product_line": line, "model": rng.choice(models), "purchase_date": bought.isoformat(), "warranty_status": warranty}


def plan_dataset(n: int, seed: int, faults: tuple[str, ...] = FAULTS) -> list[TicketPlan]:
    """`n` tickets with the `faults` as balanced as `n` allows, in shuffled order."""
    unknown = set(faults) - set(FAULTS)
    if unknown or not faults:
        raise ValueError(f"faults must be a non-empty subset of {FAULTS}; unknown: {sorted(unknown)}")
    rng = random.Random(seed)
    order = [faults[i % len(faults)] for i in range(n)]
    rng.shuffle(order)
    return [plan_ticket(f"T{seed}-{index:05d}", fault, random.Random(rng.getrandbits(64))) for index, fault in enumerate(order)]
