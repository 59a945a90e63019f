"""OCR (rapidocr-onnxruntime, real models) reads the error codes on generated screens."""

from __future__ import annotations

import random
import re

import pytest

from twinlens_support_ticket import ocr
from twinlens_support_ticket.generate.build import render_photo
from twinlens_support_ticket.generate.messages import FAULT_MESSAGES
from twinlens_support_ticket.generate.plan import SCREENED, TicketPlan
from twinlens_support_ticket.generate import messages

SCREENSHOTS = 30


def normalise(text: str) -> str:
    """Upper case without spaces, with the dash look-alikes OCR returns made plain dashes."""
    return re.sub(r"\s+", "", text.upper()).replace("—", "-").replace("–", "-").replace("_", "-")


def screenshot(index: int):
    """A photo of a device showing a fault's message, as the generator draws them."""
    rng = random.Random(f"ocr-test-{index}")
    fault = sorted(FAULT_MESSAGES)[index % len(FAULT_MESSAGES)]
    device = SCREENED[index % len(SCREENED)]
    crash = device == "laptop" and index % 2 == 0
    content, _ = messages.fault_message(fault, rng, crash_screen=crash)
    plan = TicketPlan(ticket_id=f"ocr{index}", fault=fault, evidence="photo", device=device, view="front",
                      screen=content, close_up=True)
    return render_photo(plan, rng), content.code


@pytest.fixture(scope="module")
def readings():
    results = []
    for index in range(SCREENSHOTS):
        photo, code = screenshot(index)
        results.append((code, ocr.read_text(photo) or ""))
    return results


def test_error_codes_are_read_in_at_least_90_percent_of_screenshots(readings):
    correct = [code for code, text in readings if code in normalise(text)]
    rate = len(correct) / len(readings)
    misses = [(code, text) for code, text in readings if code not in normalise(text)]
    print(f"OCR read {len(correct)}/{len(readings)} error codes ({rate:.0%}); misses: {misses}")
    assert rate >= 0.9, misses


def test_the_message_words_are_read_too(readings):
    # The title tells the fault when the code alone would not (e.g. "Liquid detected").
    titles = {title.upper().replace(" ", "") for options in FAULT_MESSAGES.values() for title, *_ in options}
    with_title = [text for _, text in readings if any(title in normalise(text) for title in titles)]
    assert len(with_title) >= 0.8 * len(readings)


def test_a_photo_without_text_reads_as_none():
    from PIL import Image

    assert ocr.read_text(Image.new("RGB", (200, 200), (120, 160, 90))) is None


def test_engine_is_created_once_per_process():
    assert ocr.get_engine() is ocr.get_engine()


@pytest.mark.parametrize(
    ("read", "restored"),
    [
        ("Accessoryerror", "Accessory error"),
        ("Chargingport fault.", "Charging port fault."),
        ("Batteryhealthis", "Battery health is"),  # commoner words win a tie
        ("CodePRT-6257", "Code PRT-6257"),
        ("Welcome", "Welcome"),  # a known word stays whole
        ("Code E-2043", "Code E-2043"),
        ("Xqzvbnmwrt", "Xqzvbnmwrt"),  # no split into known words: left as read
    ],
)
def test_run_together_words_are_split_again(read, restored):
    from twinlens_support_ticket.ocr_words import restore_spaces

    assert restore_spaces(read) == restored
