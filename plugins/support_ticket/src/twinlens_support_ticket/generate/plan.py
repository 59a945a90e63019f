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

from twinlens_support_ticket.generate import messages
from twinlens_support_ticket.generate.devices import VIEWS, Defects
from twinlens_support_ticket.generate.screens import ScreenContent
from twinlens_support_ticket.labels import FAULTS

EVIDENCE_MODES = (("both", 0.5), ("photo", 0.25), ("text", 0.25))
DEVICES_FOR = {
    "cracked_screen": ("phone", "phone", "tablet", "laptop", "watch"),
    "water_damage": ("phone", "tablet", "laptop", "headphones", "watch"),
    "swollen_battery": ("phone", "phone", "tablet", "laptop"),
    "broken_port": ("phone", "tablet", "laptop", "headphones"),
    "cosmetic_damage": ("phone", "tablet", "laptop", "headphones", "watch"),
    "missing_part": ("phone", "tablet", "laptop", "headphones", "watch"),
    "software_error": ("phone", "phone", "tablet", "laptop", "watch"),
    "no_visible_fault": ("phone", "tablet", "laptop", "headphones", "watch"),
}
# Share of photo evidence that is an on-screen message rather than visible damage.
SCREEN_SHARE = {"software_error": 1.0, "water_damage": 0.3, "swollen_battery": 0.25, "broken_port": 0.3}
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
        return self.evidence in ("both", "text") or (self.fault == "no_visible_fault" and self.evidence == "none-specific")


def plan_ticket(ticket_id: str, fault: str, rng: random.Random) -> TicketPlan:
    device = rng.choice(DEVICES_FOR[fault])
    evidence = _evidence(fault, rng)
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


def _evidence(fault: str, rng: random.Random) -> str:
    if fault == "no_visible_fault":
        return rng.choices(["none-vague", "none-specific"], [0.4, 0.6])[0]
    modes, weights = zip(*EVIDENCE_MODES)
    return rng.choices(modes, weights)[0]


def _show_fault(plan: TicketPlan, rng: random.Random) -> bool:
    """Make the photo show the fault; returns whether its message means 'unusable'."""
    fault, device = plan.fault, plan.device
    if device in SCREENED and rng.random() < SCREEN_SHARE.get(fault, 0.0):
        crash = device == "laptop" and rng.random() < 0.5
        plan.screen, severe = messages.fault_message(fault, rng, crash_screen=crash)
        plan.view, plan.close_up = "front", True
        return severe
    plan.view = _damage_view(fault, device, rng)
    plan.overlay = {"cracked_screen": "cracks", "water_damage": "stains", "cosmetic_damage": "scratches"}.get(fault)
    plan.defects = Defects(
        bulge=fault == "swollen_battery", missing=fault == "missing_part", broken_port=fault == "broken_port"
    )
    plan.puddle = fault == "water_damage" and rng.random() < 0.6
    # No close-up notice here: framing on the screen would crop the damage out of the photo.
    _idle_screen(plan, rng, notices=False)
    return False


def _damage_view(fault: str, device: str, rng: random.Random) -> str:
    if fault == "broken_port":
        return "port"
    if fault == "cracked_screen":
        return "front"
    if fault == "missing_part":
        return {"phone": "back", "tablet": "back", "laptop": "front", "headphones": "front"}.get(device) or rng.choice(VIEWS[device])
    if fault == "cosmetic_damage" and "back" in VIEWS[device]:
        return "back"
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
    from twinlens_support_ticket.generate import tickets

    if not plan.specific_text or plan.fault == "no_visible_fault":
        return
    roll = rng.random()
    if plan.fault in tickets.UNUSABLE and roll < 0.3:
        plan.unusable = True
    elif plan.fault in tickets.MINOR and roll > 0.8:
        plan.minor = True
    if plan.fault in ("water_damage", "broken_port", "swollen_battery") and rng.random() < 0.2:
        plan.hazard = True


def severity(fault: str, *, unusable: bool, minor: bool, hazard: bool) -> str:
    """Severity from the fault and its context: the rule the generated labels follow."""
    if hazard or fault == "swollen_battery":
        return "critical"
    if fault == "water_damage":
        return "high"
    if fault in ("cosmetic_damage", "no_visible_fault"):
        return "low"
    if unusable:
        return "high"
    return "low" if minor else "medium"


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
