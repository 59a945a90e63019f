"""Tables for explanations stored with job results (issue 13: heatmaps, word weights)."""

from __future__ import annotations
