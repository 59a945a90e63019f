"""Values every JSON consumer accepts.

Python's json writes NaN and infinity, but they are not JSON: PostgreSQL's JSON columns
refuse them and strict parsers fail on them. Metrics produce them (an F1 with no positive
example), so whatever is stored or written as JSON passes through `json_safe` first.
"""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, replaced by None (tuples become lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
