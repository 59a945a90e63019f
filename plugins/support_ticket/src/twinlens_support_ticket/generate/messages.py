"""On-screen messages of generated photos: error dialogs, warnings and harmless notices.

A fault's message tells the fault only through its words and code, which is the point:
the photo of a phone showing "Liquid detected" looks like any phone with a dialog, and
only the text read from it (OCR) says water got in.
"""

from __future__ import annotations

import random

from twinlens_support_ticket.faults import FAULT_SPECS, ScreenMessage, fault_spec
from twinlens_support_ticket.generate.screens import ScreenContent

# The messages of each fault that can show on a screen (see faults.PhotoHints.messages).
FAULT_MESSAGES: dict[str, tuple[ScreenMessage, ...]] = {spec.name: spec.photo.messages for spec in FAULT_SPECS
                                                        if spec.photo.messages}
# Harmless notices: text in the photo that says nothing about a fault.
BENIGN_MESSAGES: list[tuple[str, tuple[str, ...]]] = [
    ("Update complete", ("Your device is", "up to date.")),
    ("Backup finished", ("All files were", "saved.")),
    ("Connected", ("Wi-Fi network", "HomeNet-5G")),
    ("Welcome", ("Set up your", "new device.")),
    ("Storage", ("82% of storage", "is used.")),
]


def error_code(prefix: str, rng: random.Random) -> str:
    return f"{prefix}-{rng.randint(100, 9999)}"


def fault_message(fault: str, rng: random.Random, *, crash_screen: bool) -> tuple[ScreenContent, bool]:
    """A message that shows `fault`; returns it and whether it means the device is unusable."""
    photo = fault_spec(fault).photo
    title, lines, prefix, severe = rng.choice(photo.messages)
    kind = "crash" if crash_screen and photo.crash_screens else "dialog"
    content = ScreenContent(kind=kind, title=title, lines=lines, code=error_code(prefix, rng), accent=photo.message_accent)
    return content, severe


def benign_message(rng: random.Random) -> ScreenContent:
    title, lines = rng.choice(BENIGN_MESSAGES)
    return ScreenContent(kind="dialog", title=title, lines=lines, accent=(40, 120, 60))


def has_message(fault: str) -> bool:
    return fault in FAULT_MESSAGES
