"""Every bad input gets a clear 4xx problem+json and leaves nothing behind: no job row,
no stored blob."""

from __future__ import annotations

import base64
import http.server
import io
import os
import threading
from contextlib import contextmanager

import pytest
from PIL import Image
from service_helpers import png_bytes, problem
from sqlalchemy import func, select

from twinlens.db.models import Job

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
    "corrupt bytes": (415, {"image": ("x.png", b"\x00\x01not an image at all" * 20, "image/png")}, {"text": "hi"}),
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
