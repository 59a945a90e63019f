"""Helpers of the retention and erasure tests: everything the service stores, as text (every
column of every table, every file of the blob store), and a webhook receiver on loopback."""

from __future__ import annotations

import http.server
import io
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import inspect, text


def planted(label: str) -> str:
    """A string no other test and no model output contains."""
    return f"{label}{uuid.uuid4().hex[:12]}"


def png_carrying(chunk: str, colour: tuple[int, int, int] = (40, 160, 90)) -> bytes:
    """A small PNG whose file holds `chunk` as a text chunk: a distinct blob, findable by grep."""
    info = PngInfo()
    info.add_text("Comment", chunk)
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def stored_text(live) -> str:
    """Every row of every table and every blob file, lower-cased, as one string."""
    parts: list[str] = []
    with live.db.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                parts.append(repr(tuple(row)))
    for path in live.settings.resolved_blob_dir.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts).lower()


def found(strings: dict[str, str], haystack: str) -> dict[str, str]:
    return {name: value for name, value in strings.items() if value.lower() in haystack}


@dataclass
class Receiver:
    url: str = ""
    bodies: list[bytes] = field(default_factory=list)


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A webhook endpoint that answers 204 and keeps every body it got."""
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            state.bodies.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def wait_delivered(client, job_id: str, timeout: float = 60.0) -> dict:
    """The job's webhook delivery once it succeeded."""
    deadline = time.monotonic() + timeout
    deliveries: list = []
    while time.monotonic() < deadline:
        deliveries = client.get(f"/v1/jobs/{job_id}/deliveries").json()["data"]
        if deliveries and deliveries[0]["status"] == "succeeded":
            return deliveries[0]
        time.sleep(0.1)
    raise AssertionError(f"no successful delivery for job {job_id}: {deliveries}")
