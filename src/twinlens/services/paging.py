"""Pages of the API's lists: what a client asks for (PageRequest) and its cursors.

Every list is newest first on (created_at, id), so one cursor format serves them all: the
key of the last row of the previous page, as URL-safe base64 JSON. It is opaque to
clients; its format is kept stable so that a cursor handed out stays valid.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from twinlens.contract.errors import InputError
from twinlens.db.repositories.pagination import KeysetPage

ListKey = tuple[datetime, uuid.UUID]


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after: ListKey | None = None  # the decoded cursor; None: the first page

    @classmethod
    def from_query(cls, limit: int, cursor: str | None) -> PageRequest:
        """Raises InputError (a 422) for a cursor this API did not hand out."""
        return cls(limit=limit, after=decode_cursor(cursor) if cursor else None)


def next_cursor(page: KeysetPage) -> str | None:
    """The cursor of the page after this one; None on the last page."""
    return encode_cursor(page.next_key) if page.next_key else None


def encode_cursor(key: ListKey) -> str:
    created_at, row_id = key
    payload = json.dumps({"c": created_at.isoformat(), "i": str(row_id)}).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str) -> ListKey:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(payload["c"]), uuid.UUID(payload["i"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InputError("cursor", "not a cursor this API returned") from exc
