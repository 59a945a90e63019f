"""Helpers shared by the service tests (imported by name; tests/service is on sys.path)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image


def png_bytes(size: tuple[int, int] = (48, 48), colour: tuple[int, int, int] = (200, 30, 30), seed: int = 0) -> bytes:
    """A small PNG; `seed` varies one pixel so each call can be a distinct blob."""
    image = Image.new("RGB", size, colour)
    image.putpixel((seed % size[0], (seed // size[0]) % size[1]), (seed % 256, (seed * 7) % 256, (seed * 13) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(size: tuple[int, int] = (48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 answer with `status`; return its body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body


def paced(send: Callable[[], httpx.Response], tries: int = 10) -> httpx.Response:
    """`send()` again after the Retry-After of a 429, as a well-behaved client does: a test
    that submits fifty jobs at full speed outruns the default key limit (burst 40)."""
    for _ in range(tries):
        answer = send()
        if answer.status_code != 429:
            return answer
        time.sleep(float(answer.headers.get("retry-after", 1)))
    return answer


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/v1/jobs/{job_id}")
        if answer.status_code == 429:  # polling shares the key's rate limit with the test's own requests
            time.sleep(float(answer.headers.get("retry-after", 1)))
            continue
        body = answer.json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        # A tenth of a second: half the default key limit (20/s), so a waiting test leaves
        # room for the requests it makes next.
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")
