"""Fetch an image given by URL: guarded address, timeout, size cap, bounded redirects."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from twinlens.contract.errors import InputError
from twinlens.services.netguard import check_peer, check_url

FIELD = "inputs.image.url"


@dataclass
class Fetched:
    data: bytes
    media_type: str | None


def fetch_image(url: str, *, max_bytes: int, timeout: float, max_redirects: int, allow_private: bool) -> Fetched:
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(max_redirects + 1):
            check_url(url, field=FIELD, allow_private=allow_private)
            fetched, location = _get_once(client, url, max_bytes, allow_private)
            if location is None:
                return fetched
            url = urljoin(url, location)
    raise InputError(FIELD, f"more than {max_redirects} redirects")


def _get_once(client: httpx.Client, url: str, max_bytes: int, allow_private: bool) -> tuple[Fetched, str | None]:
    try:
        with client.stream("GET", url) as response:
            check_peer(_peer_address(response), field=FIELD, allow_private=allow_private)
            if response.is_redirect and "location" in response.headers:
                return Fetched(b"", None), response.headers["location"]
            if response.status_code != 200:
                raise InputError(FIELD, f"fetching the image answered HTTP {response.status_code}")
            return Fetched(read_capped(response, max_bytes), _media_type(response)), None
    except httpx.HTTPError as exc:
        raise InputError(FIELD, f"could not fetch the image: {exc.__class__.__name__}: {exc}") from exc


def read_capped(response: httpx.Response, max_bytes: int, *, field: str = FIELD, noun: str = "the image") -> bytes:
    """The body, refused (413) as soon as it is over `max_bytes`, declared or not."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise InputError(field, f"{noun} is {declared} bytes; the limit is {max_bytes}", status=413)
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise InputError(field, f"{noun} is over the limit of {max_bytes} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    return value.split(";", 1)[0].strip().lower() if value else None


def _peer_address(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    peer = stream.get_extra_info("server_addr")
    return peer[0] if peer else None
