"""Optional product metadata sent with a ticket: product line, model, purchase date, warranty.

It is not a model input: the generated and real data sets rarely carry it consistently,
and what it changes is the *decision* (cover the repair or quote it, replace a unit that
arrived incomplete) rather than what is wrong with the device. `decide()` reads it from
the prediction's extras, where `prepare()` leaves it after validation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from twinlens.contract.errors import InputError

WARRANTY_STATUSES = ("in_warranty", "extended", "expired", "unknown")
# Within this many days of purchase a faulty or incomplete unit is swapped, not repaired.
RETURN_WINDOW_DAYS = 30


@dataclass(frozen=True)
class ProductInfo:
    product_line: str | None = None
    model: str | None = None
    purchase_date: str | None = None  # ISO date, validated
    warranty_status: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def days_since_purchase(self, today: dt.date | None = None) -> int | None:
        if self.purchase_date is None:
            return None
        return ((today or dt.date.today()) - dt.date.fromisoformat(self.purchase_date)).days


def parse_product(metadata: dict[str, Any]) -> ProductInfo:
    """Validate the metadata fields; raise InputError naming the bad one."""
    return ProductInfo(
        product_line=_optional_text(metadata, "product_line"),
        model=_optional_text(metadata, "model"),
        purchase_date=_parse_date(metadata.get("purchase_date")),
        warranty_status=_parse_warranty(metadata.get("warranty_status")),
    )


def product_from_extras(extras: dict[str, Any]) -> ProductInfo:
    data = extras.get("product") or {}
    return ProductInfo(**{key: data.get(key) for key in ("product_line", "model", "purchase_date")},
                       warranty_status=data.get("warranty_status") or "unknown")


def _optional_text(metadata: dict[str, Any], name: str) -> str | None:
    value = metadata.get(name)
    if value is None or str(value).strip() == "":
        return None
    return str(value).strip()[:200]


def _parse_date(value: Any) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        date = dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise InputError("metadata.purchase_date", f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
    if date > dt.date.today():
        raise InputError("metadata.purchase_date", f"{date.isoformat()} is in the future")
    return date.isoformat()


def _parse_warranty(value: Any) -> str:
    if value is None or str(value).strip() == "":
        return "unknown"
    status = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    if status not in WARRANTY_STATUSES:
        raise InputError("metadata.warranty_status", f"{value!r} is not one of {', '.join(WARRANTY_STATUSES)}")
    return status
