"""Registration through the entry point, declarations, and prepare() on real inputs."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from PIL import Image
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import RawInput
from twinlens.contract.registry import PluginRegistry, get_plugin, validate_plugin

from twinlens_support_ticket.generate.build import save_with_orientation
from twinlens_support_ticket.generate.messages import fault_message
from twinlens_support_ticket.generate.plan import TicketPlan
from twinlens_support_ticket.generate.build import render_photo
from twinlens_support_ticket.plugin import SupportTicketPlugin


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def error_photo(seed: int = 0) -> tuple[Image.Image, str]:
    import random

    rng = random.Random(seed)
    content, _ = fault_message("software_error", rng, crash_screen=False)
    plan = TicketPlan(ticket_id="t", fault="software_error", evidence="photo", device="tablet", view="front",
                      screen=content, close_up=True)
    return render_photo(plan, rng), content.code


def test_registered_under_the_entry_point_like_a_third_party_plugin():
    registry = PluginRegistry()
    assert "support_ticket" in registry.names()
    plugin = registry.get("support_ticket")
    assert isinstance(plugin, SupportTicketPlugin)
    assert get_plugin("support_ticket").name == "support_ticket"


def test_declarations_validate_and_serialise():
    plugin = SupportTicketPlugin()
    validate_plugin(plugin)
    described = json.loads(json.dumps(plugin.describe()))
    tasks = {task["name"]: task for task in described["label_schema"]["tasks"]}
    assert [label["name"] for label in tasks["fault"]["labels"]] == [
        "cracked_screen", "water_damage", "swollen_battery", "broken_port",
        "cosmetic_damage", "missing_part", "software_error", "no_visible_fault",
    ]
    assert [label["name"] for label in tasks["severity"]["labels"]] == ["low", "medium", "high", "critical"]
    assert all(len(label["description"]) > 30 for label in tasks["fault"]["labels"])
    assert plugin.input_schema().text_names[0] == "text"  # `twinlens predict --text` goes there
    spec = plugin.default_model_spec()
    assert spec.text_inputs == ["text", "ocr"] and set(spec.modalities) == {"image", "text", "ocr"}


def test_importing_the_plugin_loads_neither_torch_nor_ocr():
    code = (
        "import sys; from twinlens.contract.registry import get_plugin; p = get_plugin('support_ticket'); "
        "p.describe(); p.default_model_spec(); "
        "print(sorted(m for m in ('torch', 'rapidocr_onnxruntime', 'onnxruntime', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_prepare_reads_the_error_code_from_the_photo_as_its_own_input():
    plugin = SupportTicketPlugin()
    photo, code = error_photo()
    sample = plugin.prepare(RawInput(image_bytes=png_bytes(photo), texts={"subject": "Help", "text": "it stopped working"},
                                     metadata={"product_line": "Slate", "warranty_status": "in_warranty"}))
    assert sample.texts["text"] == "Help. it stopped working"
    assert code in sample.texts["ocr"].replace(" ", "")
    assert code not in sample.texts["text"]  # never glued into the ticket text
    extras = sample.meta["extras"]
    assert extras["ocr_text"] == sample.texts["ocr"]
    assert extras["product"]["warranty_status"] == "in_warranty"
    assert sample.image is not None and sample.image.mode == "RGB"


def test_prepare_uses_given_ocr_text_and_finds_hazards():
    plugin = SupportTicketPlugin()
    sample = plugin.prepare(RawInput(texts={"text": "It smells like burning", "ocr": "Battery warning BAT-117"}))
    assert sample.image is None
    assert sample.texts["ocr"] == "Battery warning BAT-117"
    assert sample.meta["extras"]["safety_mentions"] == ["burning"]


def test_prepare_honours_exif_orientation(tmp_path):
    plugin = SupportTicketPlugin()
    upright = Image.new("RGB", (60, 30), (255, 255, 255))
    upright.paste((255, 0, 0), (0, 0, 20, 30))  # red band on the left
    path = tmp_path / "sideways.jpg"
    save_with_orientation(upright, path, 6)
    stored = Image.open(path)
    assert stored.size == (30, 60)  # the pixels really are stored sideways
    sample = plugin.prepare(RawInput(image_bytes=path.read_bytes(), texts={"text": "see photo", "ocr": "x"}))
    assert sample.image.size == (60, 30)
    red, green, _ = sample.image.getpixel((5, 15))
    assert red > 200 and green < 60


def test_prepare_needs_a_photo_or_a_text():
    with pytest.raises(InputError) as caught:
        SupportTicketPlugin().prepare(RawInput(texts={"text": "   "}))
    assert caught.value.field == "inputs"


@pytest.mark.parametrize(("data", "status"), [(b"not an image", 422), (None, 415)])
def test_prepare_refuses_unreadable_and_unaccepted_images(data, status):
    if data is None:  # a real GIF: readable, but not a format this plugin accepts
        data = png_bytes(Image.new("RGB", (8, 8)), "GIF")
    with pytest.raises(InputError) as caught:
        SupportTicketPlugin().prepare(RawInput(image_bytes=data, texts={"text": "hello"}))
    assert caught.value.field == "image" and caught.value.status == status


@pytest.mark.parametrize(
    ("metadata", "field"),
    [({"purchase_date": "yesterday"}, "metadata.purchase_date"), ({"warranty_status": "forever"}, "metadata.warranty_status"),
     ({"purchase_date": "2999-01-01"}, "metadata.purchase_date")],
)
def test_prepare_names_bad_metadata(metadata, field):
    with pytest.raises(InputError) as caught:
        SupportTicketPlugin().prepare(RawInput(texts={"text": "hello"}, metadata=metadata))
    assert caught.value.field == field


def test_prepare_refuses_oversized_text():
    with pytest.raises(InputError) as caught:
        SupportTicketPlugin().prepare(RawInput(texts={"text": "a" * 20_001}))
    assert caught.value.field == "text"
