"""The API's image check asks the plugin what an upload is (`Plugin.check_image_format`):
services know no domain formats, and a plugin with a format of its own is served by it."""

from __future__ import annotations

import collections
import io

import numpy as np
import pytest
from PIL import Image

from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Plugin, RawInput
from twinlens.contract.schema import ImageInput, InputSchema, Label, LabelSchema, Task, TextField
from twinlens.generic import GenericPlugin
from twinlens.services.inputs import SubmittedInputs, validate_inputs
from twinlens.settings import Settings

TALLY_TYPE = "application/x-tally"
TALLY_MAGIC = b"TALLY1"


class TallyPlugin(Plugin):
    """Reads a made-up image format, and PNG the default way."""

    name = "tally"

    def label_schema(self) -> LabelSchema:
        return LabelSchema(tasks=(Task(name="t", kind="multiclass", labels=(Label(name="a"), Label(name="b"))),))

    def input_schema(self) -> InputSchema:
        return InputSchema(image=ImageInput(media_types=(TALLY_TYPE, "image/png")), texts=(TextField(name="text"),))

    def check_image_format(self, data: bytes, *, max_pixels: int) -> str:
        if data.startswith(TALLY_MAGIC):
            return TALLY_TYPE
        return super().check_image_format(data, max_pixels=max_pixels)

    def read_dataset(self, path, options=None):
        raise NotImplementedError("not needed to check uploads")

    def make_sample_dataset(self, out_dir, n=200, seed=0):
        raise NotImplementedError("not needed to check uploads")

    def decide(self, prediction):
        return {"needs_review": False}


def _png(size=(32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, 90).save(out, format="PNG")
    return out.getvalue()


def _submit(plugin: Plugin, data: bytes, declared: str | None = None, settings: Settings | None = None) -> RawInput:
    text_input = plugin.input_schema().text_names[0]
    submitted = SubmittedInputs(image_bytes=data, image_media_type=declared, texts={text_input: "hello"})
    return validate_inputs(plugin, submitted, settings or Settings())


def test_a_plugins_own_format_is_recognised_by_its_hook():
    assert _submit(TallyPlugin(), TALLY_MAGIC + b"\x00" * 64).media_type == TALLY_TYPE
    assert _submit(TallyPlugin(), _png(), "image/png").media_type == "image/png"  # the default for the rest
    assert TallyPlugin().accepted_media_types() == (TALLY_TYPE, "image/png")


def test_a_plugin_without_the_format_refuses_it():
    with pytest.raises(InputError) as refused:
        _submit(GenericPlugin(), TALLY_MAGIC + b"\x00" * 64)
    assert refused.value.status == 422  # bytes no decoder recognises: unreadable, one status for every path


def test_the_declared_type_is_checked_against_the_plugins_types():
    with pytest.raises(InputError) as refused:
        _submit(TallyPlugin(), _png(), "image/jpeg")
    assert refused.value.status == 415 and TALLY_TYPE in refused.value.reason


def test_the_default_check_still_finds_corrupt_pixels():
    truncated = _png((64, 64))[:-40]
    with pytest.raises(InputError) as refused:
        _submit(GenericPlugin(), truncated, "image/png")
    assert refused.value.status == 422


# -- chest_xray: DICOM is its format, checked by its hook ---------------------------------
def _chest_xray():
    pytest.importorskip("twinlens_chest_xray")
    from twinlens_chest_xray import ChestXrayPlugin

    return ChestXrayPlugin()


def _radiograph() -> np.ndarray:
    from twinlens_chest_xray.synth_image import render_radiograph

    return render_radiograph({"Pleural Effusion": 1.0}, np.random.default_rng(7), size=128)


def test_dicom_goes_through_the_chest_xray_hook_and_nowhere_else():
    plugin = _chest_xray()
    from twinlens_chest_xray.sample_data import make_dicom

    dicom = make_dicom(_radiograph())
    assert _submit(plugin, dicom, "application/octet-stream").media_type == "application/dicom"
    with pytest.raises(InputError) as too_big:
        _submit(plugin, dicom, settings=Settings(max_image_pixels=100))
    assert too_big.value.status == 413
    with pytest.raises(InputError) as not_taken:
        _submit(GenericPlugin(), dicom)
    assert not_taken.value.status == 422  # no decoder of the generic plugin reads DICOM: unreadable to it


def test_a_chest_xray_job_decodes_its_picture_twice_from_upload_to_worker(monkeypatch):
    plugin = _chest_xray()
    counts: collections.Counter = collections.Counter()
    make_decoder = Image._getdecoder

    def counting(mode, decoder_name, args, extra=()):
        if decoder_name != "raw":  # "raw" unpacks pixels already in memory
            counts[decoder_name] += 1
        return make_decoder(mode, decoder_name, args, extra)

    monkeypatch.setattr(Image, "_getdecoder", counting)
    out = io.BytesIO()
    Image.fromarray(np.rint(_radiograph() * 255).astype(np.uint8)).save(out, format="JPEG")
    raw = validate_inputs(plugin, SubmittedInputs(image_bytes=out.getvalue(), image_media_type="image/jpeg",
                                                  texts={"report": "No effusion."}), Settings())
    plugin.prepare(plugin.sanitize(raw))  # the API stores what sanitize returns; the worker prepares it
    assert sum(counts.values()) == 2, dict(counts)
