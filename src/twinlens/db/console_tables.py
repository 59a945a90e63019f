"""Tables for the web console (issue 18: sessions)."""

from __future__ import annotations
