"""On-screen messages of generated photos: error dialogs, warnings and harmless notices.

A fault's message tells the fault only through its words and code, which is the point:
the photo of a phone showing "Liquid detected" looks like any phone with a dialog, and
only the text read from it (OCR) says water got in.
"""

from __future__ import annotations

import random

from twinlens_support_ticket.generate.screens import ScreenContent

# (title, lines, code prefix, severe?) per fault; "severe" messages mean the device is unusable.
# Prefixes avoid the letters O, I and L, which OCR confuses with 0 and 1 as people do.
FAULT_MESSAGES: dict[str, list[tuple[str, tuple[str, ...], str, bool]]] = {
    "software_error": [
        ("System Error", ("The app stopped", "unexpectedly."), "E", False),
        ("Update failed", ("The update could", "not be installed."), "UPD", False),
        ("Not responding", ("Settings is not", "responding."), "ERR", False),
        ("Boot failure", ("No bootable system", "was found."), "BF", True),
        ("Kernel panic", ("The system must", "restart."), "SYS", True),
    ],
    "water_damage": [
        ("Liquid detected", ("Unplug the cable.", "Moisture in port."), "LQ", False),
        ("Moisture warning", ("Water was detected", "in the device."), "WET", False),
    ],
    "swollen_battery": [
        ("Battery service", ("Battery is swelling.", "Stop charging now."), "BAT", True),
        ("Battery warning", ("Battery health is", "critical. Service."), "BAT", True),
    ],
    "broken_port": [
        ("Accessory error", ("Charging port fault.", "Cannot charge."), "PRT", False),
        ("USB port error", ("Connector damaged.", "Charging paused."), "USB", False),
    ],
}
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
    title, lines, prefix, severe = rng.choice(FAULT_MESSAGES[fault])
    kind = "crash" if crash_screen and fault == "software_error" else "dialog"
    accent = (200, 40, 40) if fault != "water_damage" else (30, 90, 190)
    return ScreenContent(kind=kind, title=title, lines=lines, code=error_code(prefix, rng), accent=accent), severe


def benign_message(rng: random.Random) -> ScreenContent:
    title, lines = rng.choice(BENIGN_MESSAGES)
    return ScreenContent(kind="dialog", title=title, lines=lines, accent=(40, 120, 60))


def has_message(fault: str) -> bool:
    return fault in FAULT_MESSAGES
