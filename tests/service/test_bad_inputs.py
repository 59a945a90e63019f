"""Every bad input gets a clear 4xx problem+json and leaves nothing behind: no job row,
no stored blob."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image
from service_helpers import png_bytes, problem
from sqlalchemy import func, select

from twinlens.cli.service import EmbeddedService
from twinlens.db.models import Job
from twinlens.db.session import Database
from twinlens.services import keys
from twinlens.settings import Settings

JOBS = "/v1/plugins/generic/jobs"


def _state(live) -> tuple[int, int]:
    with live.db.session() as session:
        jobs = session.scalar(select(func.count()).select_from(Job))
    return jobs, live.service.worker.context.blobs.count()


@contextmanager
def _nothing_left_behind(live):
    before = _state(live)
    yield
    assert _state(live) == before, "a rejected request left a job row or a blob behind"


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buffer, format=fmt)
    return buffer.getvalue()


def _truncated_png() -> bytes:
    data = _image("PNG", (64, 64))
    return data[: len(data) // 2]


MULTIPART_CASES = {
    "corrupt bytes": (422, {"image": ("x.png", b"\x00\x01not an image at all" * 20, "image/png")}, {"text": "hi"}),
    "truncated png": (422, {"image": ("x.png", _truncated_png(), "image/png")}, {"text": "hi"}),
    "over pixel limit": (413, {"image": ("x.png", _image("PNG", (1200, 1000)), "image/png")}, {}),
    "over size limit": (413, {"image": ("x.png", os.urandom(310_000), "image/png")}, {}),
    "declared wrong content type": (415, {"image": ("x.pdf", png_bytes(), "application/pdf")}, {}),
    "format the plugin does not take": (415, {"image": ("x.gif", _image("GIF", (32, 32)), "image/gif")}, {}),
    "neither image nor text": (422, None, {"metadata": "{}"}),
    "blank text only": (422, None, {"text": "   "}),
    "text over the limit": (422, None, {"text": "x" * 2001}),
    "unknown form field": (422, None, {"text": "hi", "colour": "red"}),
    "metadata not an object": (422, None, {"text": "hi", "metadata": "[1, 2]"}),
    "metadata not json": (422, None, {"text": "hi", "metadata": "{nope"}),
    "webhook not http": (422, None, {"text": "hi", "webhook_url": "ftp://example.org/hook"}),
    "image sent as a text field": (415, {"image": (None, "iVBORw0KGgo=")}, {}),
}


@pytest.mark.parametrize("case", list(MULTIPART_CASES))
def test_bad_multipart_inputs(live, case):
    status, files, data = MULTIPART_CASES[case]
    with live.client() as client, _nothing_left_behind(live):
        body = problem(client.post(JOBS, files=files, data=data), status)
    assert body["errors"][0]["field"] and body["errors"][0]["reason"]


JSON_CASES = {
    "neither image nor text": (422, {"inputs": {}}),
    "bad base64": (422, {"inputs": {"image": {"base64": "***not base64***"}}}),
    "base64 over size limit": (413, {"inputs": {"image": {"base64": base64.b64encode(os.urandom(320_000)).decode()}}}),
    "text over the limit": (422, {"inputs": {"text": "y" * 2001}}),
    "unknown text input": (422, {"inputs": {"subject": "hello"}}),
    "text not a string": (422, {"inputs": {"text": 42}}),
    "image both url and base64": (422, {"inputs": {"image": {"url": "http://example.org/a.png", "base64": "AAAA"}}}),
    "extra top-level field": (422, {"inputs": {"text": "hi"}, "priority": "high"}),
    "loopback url": (422, {"inputs": {"image": {"url": "http://127.0.0.1:9/x.png"}}}),
    "cloud metadata url": (422, {"inputs": {"image": {"url": "http://169.254.169.254/latest/meta-data/"}}}),
    "private url": (422, {"inputs": {"image": {"url": "http://10.1.2.3/x.png"}}}),
    "ipv6 loopback url": (422, {"inputs": {"image": {"url": "http://[::1]:9/x.png"}}}),
    "file url": (422, {"inputs": {"image": {"url": "file:///etc/passwd"}}}),
    "private webhook is fine here but not a bad scheme": (422, {"inputs": {"text": "hi"}, "webhook_url": "javascript:alert(1)"}),
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_bad_json_inputs(live, case):
    status, payload = JSON_CASES[case]
    with live.client() as client, _nothing_left_behind(live):
        problem(client.post(JOBS, json=payload), status)


def test_url_at_loopback_is_refused_without_being_fetched(live):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.end_headers()
            self.wfile.write(png_bytes())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/image.png"
        with live.client() as client, _nothing_left_behind(live):
            body = problem(client.post(JOBS, json={"inputs": {"image": {"url": url}}}), 422)
    finally:
        server.shutdown()
    assert "127.0.0.1" in body["detail"]
    assert hits == []


def test_wrong_request_content_type_unknown_plugin_and_oversized_body(live):
    with live.client() as client, _nothing_left_behind(live):
        problem(client.post(JOBS, content=b"text=hello", headers={"content-type": "text/plain"}), 415)
        problem(client.post(JOBS, content=b"", headers={"content-type": "image/png"}), 415)
        problem(client.post("/v1/plugins/no_such_plugin/jobs", json={"inputs": {"text": "hi"}}), 404)
        problem(client.post(JOBS, content=b"{not json", headers={"content-type": "application/json"}), 422)
        big = b"x" * (live.settings.max_request_bytes + 1)
        problem(client.post(JOBS, content=big, headers={"content-type": "application/json"}), 413)


def test_chunked_body_over_the_limit_is_cut_off(live):
    def chunks():
        for _ in range(live.settings.max_request_bytes // 65536 + 2):
            yield b"x" * 65536

    with live.client() as client, _nothing_left_behind(live):
        response = client.post(JOBS, content=chunks(), headers={"content-type": "application/json"})
    problem(response, 413)


def test_out_of_range_wait_and_limit_are_validation_problems(live):
    with live.client() as client, _nothing_left_behind(live):
        body = problem(client.post(JOBS, params={"wait": -1}, json={"inputs": {"text": "hi"}}), 422)
        assert body["errors"][0]["field"].startswith("query")
        problem(client.get("/v1/jobs", params={"limit": 0}), 422)
        problem(client.get("/v1/jobs", params={"status": "exploded"}), 422)
        problem(client.get("/v1/jobs/not-a-uuid"), 422)


def test_valid_inputs_still_work_after_the_bad_ones(live):
    with live.client() as client:
        response = client.post(JOBS, params={"wait": 30}, files={"image": ("ok.jpg", _image("JPEG", (40, 30)), "image/jpeg")})
        form = client.post(JOBS, params={"wait": 30}, data={"text": "url-encoded form, text only"})
    assert response.status_code == 200, response.text
    assert response.json()["inputs"]["image"]["media_type"] == "image/jpeg"
    assert form.status_code == 200, form.text
    assert form.json()["inputs"]["texts"] == {"text": "url-encoded form, text only"}


def test_address_guard():
    from twinlens.services.netguard import is_public_address

    assert not is_public_address("127.0.0.1")
    assert not is_public_address("169.254.169.254")
    assert not is_public_address("::ffff:127.0.0.1")
    assert not is_public_address("10.0.0.1")
    assert is_public_address("93.184.216.34")


# -- one status per cause (the table in docs/security.md) -----------------------------------
# Titles are the status's (RFC 9110) whatever the cause; the cause is the problem's type.
TITLES = {404: "Not Found", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content"}
URLENCODED = {"content-type": "application/x-www-form-urlencoded"}
INVALID_UTF8 = b"caf\xc3\xa9 \xff"  # valid UTF-8 up to the 0xff, which Latin-1 would read as "ÿ"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def _decompression_bomb_png(side: int = 30_000) -> bytes:
    """A side x side 1-bit PNG of zeros: about 110 KB sent, 900 Mpx once decoded. Written
    by hand: PIL would need the decoded image in memory to save it."""
    row = b"\x00" * (1 + (side + 7) // 8)  # the filter byte, then the packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


UNREADABLE_IMAGES = {
    "generic, no format recognised": ("generic", b"\x00\x01not an image at all" * 20),
    "generic, truncated png": ("generic", _truncated_png()),
    "generic, truncated jpeg": ("generic", _image("JPEG", (64, 64))[:300]),
    "chest_xray, no format recognised": ("chest_xray", b"\x00" * 300),
    "chest_xray, DICOM preamble without a data set": ("chest_xray", b"\x00" * 128 + b"DICM" + b"\xff" * 64),
    "chest_xray, truncated png": ("chest_xray", _truncated_png()),
}


@pytest.mark.parametrize("case", list(UNREADABLE_IMAGES))
@pytest.mark.parametrize("encoding", ["multipart", "json"])
def test_every_unreadable_image_is_one_status(live, case, encoding):
    plugin, data = UNREADABLE_IMAGES[case]
    path = f"/v1/plugins/{plugin}/jobs"
    with live.client() as client, _nothing_left_behind(live):
        if encoding == "multipart":
            response = client.post(path, files={"image": ("upload.bin", data, "application/octet-stream")})
        else:
            response = client.post(path, json={"inputs": {"image": {"base64": base64.b64encode(data).decode()}}})
        body = problem(response, 422)
    assert body["title"] == TITLES[422] and body["type"].endswith("/invalid-input")
    assert body["errors"][0]["field"] == "image" and body["errors"][0]["reason"]


@pytest.mark.parametrize("encoding", ["multipart", "json"])
def test_a_decompression_bomb_is_413_naming_the_pixel_limit(live, encoding):
    bomb = _decompression_bomb_png()
    assert len(bomb) < live.settings.max_upload_bytes  # small on the wire: only its pixels are too many
    with live.client() as client, _nothing_left_behind(live):
        if encoding == "multipart":
            response = client.post(JOBS, files={"image": ("bomb.png", bomb, "image/png")})
        else:
            response = client.post(JOBS, json={"inputs": {"image": {"base64": base64.b64encode(bomb).decode()}}})
        body = problem(response, 413)
    assert body["errors"][0]["field"] == "image"
    assert f"limit of {live.settings.max_image_pixels} pixels" in body["detail"]


@pytest.mark.parametrize("field", ["text", "metadata", "webhook_url"])
def test_invalid_utf8_in_a_multipart_text_part_is_422_naming_the_field(live, field):
    parts = {"text": (None, b"some words"), field: (None, INVALID_UTF8)}
    with live.client() as client, _nothing_left_behind(live):
        body = problem(client.post(JOBS, files=parts), 422)
    assert body["errors"][0]["field"] == field
    assert "utf-8" in body["errors"][0]["reason"] and "0xff" in body["errors"][0]["reason"]


@pytest.mark.parametrize("encoded", [b"text=caf%C3%A9%20%FF", b"text=" + INVALID_UTF8], ids=["percent-encoded", "raw"])
def test_invalid_utf8_in_a_urlencoded_field_is_422_naming_it(live, encoded):
    with live.client() as client, _nothing_left_behind(live):
        body = problem(client.post(JOBS, content=encoded, headers=URLENCODED), 422)
    assert body["errors"][0]["field"] == "text" and "utf-8" in body["errors"][0]["reason"]


def test_utf8_texts_are_stored_as_sent_in_every_form_encoding(live):
    words = "café ✓ naïve"
    with live.client() as client:
        answers = [
            client.post(JOBS, params={"wait": 30}, files={"text": (None, words.encode())}),
            client.post(JOBS, params={"wait": 30}, data={"text": words}),
            client.post(JOBS, params={"wait": 30}, content=b"text=" + words.encode(), headers=URLENCODED),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["inputs"]["texts"] == {"text": words}


def test_one_title_per_status_whatever_the_cause(live):
    def chunks():
        for _ in range(live.settings.max_request_bytes // 65536 + 2):
            yield b"x" * 65536

    big_body = b"x" * (live.settings.max_request_bytes + 1)
    with live.client() as client:
        answers = {
            413: [
                client.post(JOBS, content=big_body, headers={"content-type": "application/json"}),  # Content-Length
                client.post(JOBS, content=chunks(), headers={"content-type": "application/json"}),  # streamed
                client.post(JOBS, files={"image": ("x.png", os.urandom(310_000), "image/png")}),
                client.post(JOBS, files={"image": ("x.png", _image("PNG", (1200, 1000)), "image/png")}),
                client.post(JOBS, json={"inputs": {"image": {"base64": base64.b64encode(os.urandom(320_000)).decode()}}}),
            ],
            422: [
                client.post(JOBS, params={"wait": -1}, json={"inputs": {"text": "hi"}}),  # request validation
                client.post(JOBS, json={"inputs": {}}),  # an input
                client.get("/v1/jobs", params={"cursor": "not-a-cursor"}),  # a service's refusal
                client.post(JOBS, files={"image": ("x.png", _truncated_png(), "image/png")}),
            ],
            404: [client.get("/v1/nowhere"), client.post("/v1/plugins/no_such_plugin/jobs", json={"inputs": {"text": "hi"}}),
                  client.get("/v1/jobs/00000000-0000-0000-0000-000000000000")],
            415: [client.post(JOBS, content=b"hi", headers={"content-type": "text/plain"}),
                  client.post(JOBS, files={"image": ("x.gif", _image("GIF", (32, 32)), "image/gif")})],
        }
    for status, responses in answers.items():
        titles = {problem(response, status)["title"] for response in responses}
        assert titles == {TITLES[status]}, (status, titles)
    for response in answers[413]:
        assert response.json()["errors"][0]["field"] in ("body", "image", "inputs.image.base64")


# -- the part limit needs a service whose body limit is above it: the defaults ------------
@dataclass
class DefaultLimitsService:
    settings: Settings
    db: Database
    service: EmbeddedService
    key: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.service.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def default_limits(request, tmp_path_factory) -> Iterator[DefaultLimitsService]:
    """The real service with every limit at its default (live's are smaller, to keep its
    tests fast, and put its body limit below the part limit)."""
    data_dir = tmp_path_factory.mktemp(f"default-limits-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    settings = Settings(data_dir=data_dir, database_url=url, broker_url=None)
    service = EmbeddedService(settings, port=0).build(migrate=True).start()
    with service.database.session() as session:
        _, key = keys.create_key(session, f"limits-{uuid.uuid4().hex[:8]}")
    try:
        yield DefaultLimitsService(settings, service.database, service, key)
    finally:
        service.close()


@contextmanager
def _no_job_written(running: DefaultLimitsService):
    def count() -> int:
        with running.db.session() as session:
            return session.scalar(select(func.count()).select_from(Job))

    before = count()
    yield
    assert count() == before, "a rejected request left a job row behind"


@pytest.mark.parametrize("field", ["text", "metadata"])
def test_a_form_field_over_the_part_limit_is_413_naming_it(default_limits, field):
    limit = 1024 * 1024  # with the defaults (20,000 characters, 16 KiB of metadata) the 1 MiB floor
    assert limit < default_limits.settings.max_request_bytes
    over = b"x" * (limit + 1)
    with default_limits.client() as client, _no_job_written(default_limits):
        multipart = problem(client.post(JOBS, files={field: (None, over)}), 413)
        urlencoded = problem(client.post(JOBS, content=field.encode() + b"=" + over, headers=URLENCODED), 413)
    for body in (multipart, urlencoded):
        assert body["title"] == TITLES[413]
        assert body["errors"][0]["field"] == field and f"limit of {limit} bytes" in body["errors"][0]["reason"]
