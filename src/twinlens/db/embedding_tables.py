"""Tables for case embeddings and search indexes (issue 13: similar cases, search, alignment)."""

from __future__ import annotations
