"""Tables for helpdesk connectors (issue 17: Zendesk, Freshdesk)."""

from __future__ import annotations
