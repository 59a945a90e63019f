"""The decision as a helpdesk sees it: mapped fields, tags and the private note's text.

One rendering for every helpdesk, so Zendesk and Freshdesk agents read the same note.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from twinlens.connectors.contract import FieldMapping, WriteBack

# The note's lines, in the order an agent reads them; any other plain field of a plugin's
# decision follows (a generic plugin's decision has its own keys).
NOTE_ORDER = (
    ("fault", "Fault"), ("fault_confidence", "Confidence"), ("severity", "Severity"),
    ("severity_confidence", "Severity confidence"), ("action_text", "Action"), ("team", "Team"),
    ("needs_review", "Needs review"), ("review_reason", "Review reason"),
)
# Copies of the inputs or internals: not for the note.
NOT_NOTED = {"action", "explanation", "ocr_text", "top_faults", "contributions", "inputs_present"}
TAG_UNSAFE = re.compile(r"[^a-z0-9_\-]+")


def render(decision: Mapping[str, Any], mapping: FieldMapping, *, model_version: str, job_id: str) -> WriteBack:
    """The write-back of a succeeded job."""
    fields = {target: _field_value(decision.get(key)) for key, target in mapping.fields.items() if decision.get(key) is not None}
    tags = [tag_for(mapping.tag_prefix, key, decision[key]) for key in mapping.tagged if isinstance(decision.get(key), str)]
    review = bool(decision.get("needs_review"))
    if review and mapping.review_tag:
        tags.append(mapping.review_tag)
    lines = ["TwinLens read this ticket (photo and text):"]
    lines += [f"{label}: {_shown(decision[key])}" for key, label in NOTE_ORDER if decision.get(key) is not None]
    lines += [f"{key}: {_shown(value)}" for key, value in decision.items()
              if key not in dict(NOTE_ORDER) and key not in NOT_NOTED and _plain(value)]
    lines.append(f"Model: {model_version} (job {job_id})")
    return WriteBack(fields=fields, tags=tuple(dict.fromkeys(tags)), note="\n".join(lines),
                     group=mapping.review_group if review else None)


def render_failure(reason: str, mapping: FieldMapping, *, job_id: str) -> WriteBack:
    """A job that failed: the ticket goes to review, saying why."""
    tags = (mapping.review_tag,) if mapping.review_tag else ()
    note = f"TwinLens could not read this ticket: {reason}\n(job {job_id}); a person should triage it."
    return WriteBack(fields={}, tags=tags, note=note, group=mapping.review_group)


def tag_for(prefix: str, key: str, value: str) -> str:
    return TAG_UNSAFE.sub("_", f"{prefix}{key}_{value}".lower())


def _field_value(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0%}" if 0.0 <= value <= 1.0 else f"{value:.3g}"
    return str(value)
