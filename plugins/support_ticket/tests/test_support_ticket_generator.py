"""The generated sample data set: reproducible, balanced, and built so fusion matters."""

from __future__ import annotations

import collections
import json
import random
import re

import pytest
from PIL import Image

from twinlens_support_ticket.generate.build import make_sample_dataset, ticket_words
from twinlens_support_ticket.generate.plan import DEVICES_FOR, plan_dataset, severity
from twinlens_support_ticket.labels import FAULTS, SEVERITIES

# Words that give a fault away; vague tickets must contain none of them.
FAULT_WORDS = re.compile(
    r"\b(crack|shatter|glass|water|liquid|spill|wet|rain|pool|swell|swoll|bulg|puff|battery|port|charg|cable|usb"
    r"|scratch|scuff|dent|cosmetic|missing|key|cushion|strap|stylus|error|crash|update|boot|freez|app\b)",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def plans():
    return plan_dataset(800, seed=11)


def test_faults_are_balanced(plans):
    counts = collections.Counter(plan.fault for plan in plans)
    assert set(counts) == set(FAULTS)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_every_evidence_mode_occurs_for_every_fault(plans):
    modes = collections.defaultdict(collections.Counter)
    for plan in plans:
        modes[plan.fault][plan.evidence] += 1
    for fault in FAULTS:
        expected = {"none-vague", "none-specific"} if fault == "no_visible_fault" else {"both", "photo", "text"}
        assert set(modes[fault]) == expected, fault
        if fault != "no_visible_fault":
            # Enough of each that neither the photo nor the text alone can be right.
            assert modes[fault]["photo"] >= 15 and modes[fault]["text"] >= 15


def test_vague_tickets_say_nothing_about_the_fault(plans):
    vague = [plan for plan in plans if plan.evidence in ("photo", "none-vague")]
    assert len(vague) > 150
    for plan in vague:
        subject, description = ticket_words(plan, random.Random(plan.ticket_id))
        assert not FAULT_WORDS.search(f"{subject} {description}"), (plan.fault, subject, description)
    stopped = [p for p in vague if "stopped work" in " ".join(ticket_words(p, random.Random(p.ticket_id))).lower()]
    assert stopped, "some tickets should say only that it stopped working"


def test_specific_tickets_name_the_fault(plans):
    specific = [plan for plan in plans if plan.evidence in ("both", "text") and plan.fault != "no_visible_fault"]
    named = sum(bool(FAULT_WORDS.search(" ".join(ticket_words(p, random.Random(p.ticket_id))))) for p in specific)
    assert named / len(specific) > 0.95


def test_photos_that_look_fine_carry_no_damage(plans):
    for plan in plans:
        if plan.evidence in ("text", "none-vague", "none-specific"):
            assert plan.overlay is None and not (plan.defects.bulge or plan.defects.missing or plan.defects.broken_port or plan.puddle)
            assert plan.screen is None or not plan.screen.code  # no error code on a fine photo
        else:
            shows = plan.overlay or plan.defects.bulge or plan.defects.missing or plan.defects.broken_port or (plan.screen and plan.screen.code)
            assert shows, plan
            if not (plan.screen and plan.screen.code):
                assert not plan.close_up, plan  # framing on a notice would crop the damage out


def test_devices_fit_their_fault(plans):
    for plan in plans:
        assert plan.device in DEVICES_FOR[plan.fault]
        if plan.fault == "broken_port" and plan.defects.broken_port:
            assert plan.view == "port"


def test_severity_follows_fault_and_context(plans):
    assert severity("swollen_battery", unusable=False, minor=True, hazard=False) == "critical"
    assert severity("broken_port", unusable=False, minor=False, hazard=True) == "critical"
    assert severity("cracked_screen", unusable=True, minor=False, hazard=False) == "high"
    assert severity("cracked_screen", unusable=False, minor=True, hazard=False) == "low"
    assert severity("software_error", unusable=False, minor=False, hazard=False) == "medium"
    assert severity("cosmetic_damage", unusable=False, minor=False, hazard=False) == "low"
    counts = collections.Counter(plan.severity for plan in plans)
    assert set(counts) == set(SEVERITIES)


def test_generation_is_reproducible_and_documented(tmp_path):
    first = make_sample_dataset(tmp_path / "a", n=10, seed=4)
    second = make_sample_dataset(tmp_path / "b", n=10, seed=4)
    assert first.read_bytes() == second.read_bytes()
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    for row in rows:
        for attachment in row["attachments"]:
            assert (tmp_path / "a" / attachment).read_bytes() == (tmp_path / "b" / attachment).read_bytes()
    other = make_sample_dataset(tmp_path / "c", n=10, seed=5)
    assert other.read_bytes() != first.read_bytes()
    notice = (tmp_path / "a" / "GENERATED.md").read_text()
    assert "synthetic" in notice and "seed 4" in notice


def test_photos_come_in_several_formats_some_sideways(tmp_path):
    export = make_sample_dataset(tmp_path, n=40, seed=2)
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    paths = [tmp_path / row["attachments"][0] for row in rows if row["attachments"]]
    formats = collections.Counter(Image.open(path).format for path in paths)
    assert {"JPEG", "PNG"} <= set(formats)
    rotated = [path for path in paths if Image.open(path).getexif().get(0x0112, 1) != 1]
    assert rotated, "some JPEGs should carry an EXIF orientation"
    assert all(Image.open(path).size == (384, 384) for path in paths)


def test_csv_export_has_the_same_tickets(tmp_path):
    jsonl = make_sample_dataset(tmp_path / "j", n=6, seed=8)
    csv_path = make_sample_dataset(tmp_path / "c", n=6, seed=8, fmt="csv")
    import csv

    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    originals = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [row["ticket_id"] for row in rows] == [row["ticket_id"] for row in originals]
    assert [row["description"] for row in rows] == [row["description"] for row in originals]
    assert [row["attachments"] for row in rows] == [";".join(row["attachments"]) for row in originals]
