"""Rendering planned tickets to photos and words, and writing a helpdesk export of them."""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from twinlens_support_ticket.faults import FAULTS, fault_spec
from twinlens_support_ticket.generate import damage, scene, tickets
from twinlens_support_ticket.generate.devices import Defects, draw_device
from twinlens_support_ticket.generate.plan import REFERENCE_DATE, TicketPlan, plan_dataset

GENERATOR_VERSION = "1"
# Share of photos saved as each format, and of JPEGs stored sideways with an EXIF
# orientation tag (as phones do), which readers must honour.
FORMATS = (("jpg", 0.75), ("png", 0.15), ("webp", 0.10))
EXIF_ROTATED_SHARE = 0.2
EXPORT_COLUMNS = (
    "ticket_id", "created_at", "subject", "description", "attachments",
    "product_line", "model", "purchase_date", "warranty_status", "fault", "severity", "evidence",
)


def render_photo(plan: TicketPlan, rng: random.Random) -> Image.Image:
    device = draw_device(plan.device, plan.view, rng, plan.defects, plan.screen)
    if plan.overlay == "cracks" and device.screen:
        damage.cracks(device.image, device.screen, rng)
    elif plan.overlay == "stains":
        damage.stains(device.image, rng)
    elif plan.overlay == "scratches":
        damage.scratches(device.image, device.body, rng)
    canvas = scene.background(rng)
    if plan.puddle:
        scene.puddle(canvas, rng)
    if plan.close_up and device.screen:
        scale, anchor, angle = _screen_framing(device.screen, canvas.width, rng), _centre(device.screen), 5.0
    else:
        scale, anchor, angle = rng.uniform(0.68, 0.95) * canvas.width / max(device.image.size), None, 15.0
    scene.place(canvas, device.image, rng, scale=scale, max_angle=angle, anchor=anchor)
    return scene.light(canvas, rng)


def _screen_framing(screen: tuple[int, int, int, int], size: int, rng: random.Random) -> float:
    """Scale at which the screen fills most of the frame, as people photograph an error
    message; the top and bottom of a tall screen may be cut off (the message is central)."""
    width, height = screen[2] - screen[0], screen[3] - screen[1]
    return min(rng.uniform(0.62, 0.82) * size / width, 1.3 * size / height)


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def ticket_words(plan: TicketPlan, rng: random.Random) -> tuple[str, str]:
    """Subject and description of the ticket."""
    wording = fault_spec(plan.fault).wording
    model = plan.product.get("model") or plan.device
    # A part the photo shows missing is the part the customer names.
    part = tickets.PARTS[plan.device][0] if plan.defects.missing else rng.choice(tickets.PARTS[plan.device])
    if plan.specific_text:
        core = [tickets.fill(rng.choice(wording.specific), rng, plan.device, model, part)]
        core += _cue_sentences(plan, rng)
        subject_pool = wording.subjects if rng.random() < 0.6 else tickets.SUBJECT_VAGUE
    else:
        pool = tickets.VAGUE_FUNCTIONAL + tickets.VAGUE_NEUTRAL if wording.vague_says_stopped else tickets.VAGUE_NEUTRAL
        core = [tickets.fill(rng.choice(pool), rng, plan.device, model)]
        subject_pool = tickets.SUBJECT_VAGUE
    subject = tickets.fill(rng.choice(subject_pool), rng, plan.device, model, part)
    description = tickets.body(core, rng, plan.device, model) if plan.has_description else ""
    rate = rng.choice([0.0, 0.0, 0.05, 0.1, 0.2])
    return tickets.typos(subject, rng, rate), tickets.typos(description, rng, rate)


def _cue_sentences(plan: TicketPlan, rng: random.Random) -> list[str]:
    wording, cues = fault_spec(plan.fault).wording, []
    if plan.unusable:
        cues.append(rng.choice(wording.unusable))
    if plan.minor:
        cues.append(rng.choice(wording.minor))
    if plan.hazard:
        cues.append(rng.choice(tickets.HAZARD))
    return cues


def save_photo(image: Image.Image, path: Path, rng: random.Random) -> Path:
    """Save in a randomly chosen format; some JPEGs sideways with an EXIF orientation tag."""
    formats, weights = zip(*FORMATS)
    ext = rng.choices(formats, weights)[0]
    path = path.with_suffix("." + ext)
    if ext == "jpg" and rng.random() < EXIF_ROTATED_SHARE:
        save_with_orientation(image, path, rng.choice([3, 6, 8]), quality=rng.randint(75, 95))
    elif ext == "jpg":
        image.save(path, "JPEG", quality=rng.randint(75, 95))
    elif ext == "png":
        image.save(path, "PNG")
    else:
        image.save(path, "WEBP", quality=90)
    return path


def save_with_orientation(image: Image.Image, path: Path, orientation: int, *, quality: int = 90) -> None:
    """Store the pixels turned the way a sensor would, tagged so viewers turn them back."""
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.transpose(stored).save(path, "JPEG", quality=quality, exif=exif.tobytes())


def export_row(plan: TicketPlan, subject: str, description: str, attachment: str | list[str] | None,
               index: int) -> dict[str, Any]:
    created = dt.datetime.combine(REFERENCE_DATE, dt.time(9)) + dt.timedelta(minutes=37 * index)
    attachments = attachment if isinstance(attachment, list) else [attachment] if attachment else []
    return {
        "ticket_id": plan.ticket_id,
        "created_at": created.isoformat(),
        "subject": subject,
        "description": description,
        "attachments": attachments,
        **{key: plan.product.get(key, "") for key in ("product_line", "model", "purchase_date", "warranty_status")},
        "fault": plan.fault,
        "severity": plan.severity,
        # Which inputs show the fault; for analysis only, never a model input.
        "evidence": plan.evidence,
    }


def make_sample_dataset(out_dir: Path, n: int = 200, seed: int = 0, *, fmt: str = "jsonl",
                        faults: tuple[str, ...] | None = None, photos: int = 1) -> Path:
    """Generate `n` tickets under `out_dir`; return the export file (tickets.jsonl or .csv).

    `faults` restricts the tickets to some faults (quick experiments, focused demos).
    `photos` > 1: a ticket with a photo has that many, the fault showing in the last one
    only (the first ones: the whole device, unharmed-looking; see `overview_plan`)."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"fmt must be 'jsonl' or 'csv', not {fmt!r}")
    out_dir = Path(out_dir)
    (out_dir / "attachments").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, plan in enumerate(plan_dataset(n, seed, faults or FAULTS)):
        rng = random.Random(f"{seed}:{plan.ticket_id}")
        subject, description = ticket_words(plan, rng)
        attachment: list[str] = []
        if plan.has_photo:
            shots = [*(overview_plan(plan) for _ in range(photos - 1)), plan]
            for number, shot in enumerate(shots, 1):
                name = plan.ticket_id if len(shots) == 1 else f"{plan.ticket_id}-{number}"
                saved = save_photo(render_photo(shot, rng), out_dir / "attachments" / name, rng)
                attachment.append(saved.relative_to(out_dir).as_posix())
        rows.append(export_row(plan, subject, description, attachment, index))
    path = out_dir / f"tickets.{fmt}"
    (_write_jsonl if fmt == "jsonl" else _write_csv)(path, rows)
    _write_notice(out_dir, n, seed, path.name)
    return path


def overview_plan(plan: TicketPlan) -> TicketPlan:
    """The same device photographed whole, showing nothing of the fault (no damage, no
    puddle, no screen message): what a customer's first photo often is."""
    return replace(plan, defects=Defects(), overlay=None, puddle=False, screen=None, close_up=False)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "attachments": ";".join(row["attachments"])})


def _write_notice(out_dir: Path, n: int, seed: int, export: str) -> None:
    (out_dir / "GENERATED.md").write_text(
        f"# Generated support tickets\n\n"
        f"This data set is **synthetic**: {n} tickets drawn with PIL and written from templates by\n"
        f"`twinlens_support_ticket` (generator version {GENERATOR_VERSION}, seed {seed}). No real customer,\n"
        f"device or photo is in it. It exists for demos and tests; do not judge a real model by it.\n\n"
        f"Export: `{export}`; photos: `attachments/`. The `evidence` column says which inputs show\n"
        f"the fault (both, photo, text, none-*) and is for analysis only.\n",
        encoding="utf-8",
    )
