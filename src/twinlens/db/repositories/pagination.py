"""Keyset pagination, newest first, for any query of one entity.

A page is the rows that come after a key (the ordering columns' values of the last row a
client saw), in descending order of those columns. Unlike OFFSET, rows added or removed
meanwhile never make a page skip or repeat one, and a page costs the same however deep.
The ordering columns must end in a unique one (the id), so that every key is distinct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

Row = TypeVar("Row")
Key = tuple[Any, ...]


@dataclass
class KeysetPage(Generic[Row]):
    rows: list[Row]
    # The last row's key when more rows follow; None on the last page.
    next_key: Key | None


def keyset_page(
    session: Session, query: Select, order_by: Sequence[InstrumentedAttribute], after: Key | None, limit: int
) -> KeysetPage:
    """Up to `limit` rows of `query` after `after` (None: from the start), `order_by` descending."""
    if after is not None:
        query = query.where(_comes_after(order_by, after))
    # One row more than asked tells whether another page follows, without a COUNT.
    rows = list(session.scalars(query.order_by(*(column.desc() for column in order_by)).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return KeysetPage(rows, _key_of(rows[-1], order_by) if more and rows else None)


def filter_given(query: Select, *conditions: tuple[InstrumentedAttribute, Any]) -> Select:
    """`query` narrowed to `column == value` for each (column, value) whose value was given:
    a list's optional filters, where None or empty means "any"."""
    for column, value in conditions:
        if value:
            query = query.where(column == value)
    return query


def _comes_after(order_by: Sequence[InstrumentedAttribute], key: Key) -> ColumnElement[bool]:
    """Rows after `key` in descending order: a < ka, or a = ka and b < kb, and so on.
    Spelled out rather than as the row value comparison (a, b) < (ka, kb), which SQLite
    before 3.15 does not have."""
    if len(key) != len(order_by):
        raise ValueError(f"a key of {len(key)} values for {len(order_by)} ordering columns")
    alternatives = []
    for position, (column, value) in enumerate(zip(order_by, key)):
        ties = [earlier == earlier_value for earlier, earlier_value in zip(order_by[:position], key[:position])]
        alternatives.append(and_(*ties, column < value))
    return or_(*alternatives)


def _key_of(row: Any, order_by: Sequence[InstrumentedAttribute]) -> Key:
    return tuple(getattr(row, column.key) for column in order_by)
