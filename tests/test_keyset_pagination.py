"""The one keyset-pagination helper and the one cursor codec every list uses."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, String, Uuid, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from twinlens.contract.errors import InputError
from twinlens.db.repositories.pagination import filter_given, keyset_page
from twinlens.services.paging import PageRequest, decode_cursor, encode_cursor, next_cursor

START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    colour: Mapped[str] = mapped_column(String(10))


ORDER = (Item.created_at, Item.id)


@pytest.fixture
def session():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def _add(session, count: int, *, colour: str = "red", same_time_every: int = 3) -> None:
    # Several rows per timestamp: only the id can order them, which a key must respect.
    session.add_all(Item(created_at=START + timedelta(seconds=i // same_time_every), colour=colour) for i in range(count))
    session.flush()


def _every_page(session, query, limit: int) -> list[list[Item]]:
    pages, after = [], None
    while True:
        page = keyset_page(session, query, ORDER, after, limit)
        pages.append(page.rows)
        if page.next_key is None:
            return pages
        after = page.next_key


def test_pages_cover_every_row_once_newest_first(session):
    _add(session, 23)
    pages = _every_page(session, select(Item), limit=4)
    seen = [item.id for page in pages for item in page]
    expected = list(session.scalars(select(Item.id).order_by(Item.created_at.desc(), Item.id.desc())))
    assert seen == expected
    assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 3]


def test_an_exact_multiple_ends_without_an_empty_page(session):
    _add(session, 8)
    assert [len(page) for page in _every_page(session, select(Item), limit=4)] == [4, 4]


def test_rows_added_meanwhile_never_shift_later_pages(session):
    _add(session, 10)
    first = keyset_page(session, select(Item), ORDER, None, 4)
    session.add(Item(created_at=START + timedelta(days=1), colour="red"))  # newer than everything listed
    session.flush()
    second = keyset_page(session, select(Item), ORDER, first.next_key, 4)
    expected = list(session.scalars(select(Item).order_by(Item.created_at.desc(), Item.id.desc())))[5:9]
    assert second.rows == expected


def test_filters_and_keys_together(session):
    _add(session, 6, colour="red")
    _add(session, 5, colour="blue")
    query = filter_given(select(Item), (Item.colour, "blue"))
    pages = _every_page(session, query, limit=2)
    assert [item.colour for page in pages for item in page] == ["blue"] * 5
    assert len(list(session.scalars(filter_given(select(Item), (Item.colour, None), (Item.colour, ""))))) == 11


def test_a_key_must_match_the_ordering(session):
    with pytest.raises(ValueError, match="ordering columns"):
        keyset_page(session, select(Item), ORDER, (START,), 4)


def test_cursors_round_trip_and_keep_their_format():
    key = (START, uuid.UUID("12345678-1234-5678-1234-567812345678"))
    assert decode_cursor(encode_cursor(key)) == key
    # The format clients already hold: base64url JSON {"c": created_at, "i": id}, unpadded.
    assert encode_cursor(key) == ("eyJjIjogIjIwMjQtMDUtMDFUMTI6MDA6MDArMDA6MDAiLCAiaSI6ICIxMjM0NTY3OC0xMjM0LTU2Nz"
                                  "gtMTIzNC01Njc4MTIzNDU2NzgifQ")


@pytest.mark.parametrize("cursor", ["not-a-cursor", "e30", encode_cursor((START, uuid.uuid4()))[:-3], "!!!!"])
def test_a_cursor_this_api_did_not_hand_out_is_an_input_error(cursor):
    with pytest.raises(InputError) as error:
        PageRequest.from_query(10, cursor)
    assert error.value.field == "cursor"


def test_page_requests_and_next_cursors(session):
    assert PageRequest.from_query(5, None) == PageRequest(limit=5, after=None)
    _add(session, 3)
    page = keyset_page(session, select(Item), ORDER, None, 2)
    cursor = next_cursor(page)
    assert cursor is not None and PageRequest.from_query(2, cursor).after == page.next_key
    assert next_cursor(keyset_page(session, select(Item), ORDER, None, 3)) is None
