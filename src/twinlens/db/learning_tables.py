"""Tables for the learning loop (issue 14: holdouts, gate reports, shadow outputs, activation history, drift)."""

from __future__ import annotations
