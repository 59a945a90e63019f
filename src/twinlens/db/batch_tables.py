"""Tables for bulk scoring batches (issue 15: POST /v1/plugins/{name}/batches)."""

from __future__ import annotations
