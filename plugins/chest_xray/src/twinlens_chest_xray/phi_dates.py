"""Dates in free text, in the ways people write them, read as the calendar days they could mean.

`find_dates` yields each date-shaped span with every day it could stand for: "03/04/2021"
is 4 March or 3 April, "17.02.58" is 1958 or 2058, "5 Sept." has no year. The scrubber
removes a span when it is a whole date (generic rule) or when one of its days is a date
the study's DICOM header holds (known-PHI rule). Month names are read in English, German,
French, Spanish, Italian, Dutch and Portuguese, with or without accents.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

_MONTH_NAMES: dict[int, tuple[str, ...]] = {
    1: ("january", "jan", "januar", "jänner", "janvier", "janv", "enero", "ene", "gennaio", "genn", "gen", "januari",
        "janeiro"),
    2: ("february", "feb", "febr", "februar", "février", "févr", "fevr", "febrero", "febbraio", "februari",
        "fevereiro", "fev"),
    3: ("march", "mar", "märz", "maerz", "mars", "marzo", "maart", "março", "marco", "mrt"),
    4: ("april", "apr", "avril", "avr", "abril", "abr", "aprile"),
    5: ("may", "mai", "mayo", "maggio", "mag", "mei", "maio"),
    6: ("june", "jun", "juni", "juin", "junio", "giugno", "giu", "junho"),
    7: ("july", "jul", "juli", "juillet", "juil", "julio", "luglio", "lug", "julho"),
    8: ("august", "aug", "août", "aout", "agosto", "ago", "augustus"),
    9: ("september", "sep", "sept", "septembre", "septiembre", "setiembre", "settembre", "set", "setembro"),
    10: ("october", "oct", "oktober", "okt", "octobre", "octubre", "ottobre", "ott", "outubro", "out"),
    11: ("november", "nov", "novembre", "noviembre", "novembro"),
    12: ("december", "dec", "dezember", "dez", "décembre", "déc", "diciembre", "dic", "dicembre", "dezembro"),
}

def _fold(word: str) -> str:
    """Without accents ("février" -> "fevrier"), so either spelling finds the month."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", word) if not unicodedata.combining(ch))


MONTHS: dict[str, int] = {spelling: number for number, names in _MONTH_NAMES.items()
                          for name in names for spelling in (name, _fold(name))}
# A day and a month without a year ("5 Sept.") is read only with a month word this long:
# shorter ones are English words too ("5 out of 6", "2 mag" for magnesium, "may").
YEARLESS_MONTH_LETTERS = 4
_MONTH = "|".join(sorted(map(re.escape, MONTHS), key=len, reverse=True))
_NOT_LETTER_BEFORE, _NOT_LETTER_AFTER = r"(?<![^\W\d_])", r"(?![^\W\d_])"
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th|er|e|\.|º)?"
_YEAR = r"(?:\d{4}|'?\d{2})"
_JOIN = r"(?:[\s,/.\-]|\bde\b|\bdel\b)*"  # "17 Feb", "17-Feb-", "2 de marzo de", "Sept. 5th,"

_DAY_MONTH_YEAR = re.compile(
    rf"(?<![\w.])(?P<day>{_DAY}){_JOIN}{_NOT_LETTER_BEFORE}(?P<month>{_MONTH})\.?{_NOT_LETTER_AFTER}"
    rf"(?:{_JOIN}(?P<year>{_YEAR}))?(?![\w])", re.IGNORECASE)
_MONTH_DAY_YEAR = re.compile(
    rf"{_NOT_LETTER_BEFORE}(?P<month>{_MONTH})\.?{_JOIN}(?P<day>{_DAY})(?:,?\s*(?P<year>{_YEAR}))?(?![\w])",
    re.IGNORECASE)
_NUMERIC = re.compile(r"(?<![\w.\-/])(?P<a>\d{1,4})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{2,4})(?![\w]|[.\-/]\d)")
_COMPACT = re.compile(r"(?<![\w\-])(?P<digits>\d{8}|\d{6})(?![\w\-])")


@dataclass(frozen=True)
class DateSpan:
    start: int
    end: int
    days: frozenset[dt.date]  # every day the text could mean, for the years it could mean
    month_days: frozenset[tuple[int, int]]  # (month, day) when no year is written
    written_month: bool  # the month is a word, not a number


def find_dates(text: str) -> Iterator[DateSpan]:
    """Date-shaped spans of `text`, longest first where two overlap, in text order."""
    spans = [*_worded(text, _DAY_MONTH_YEAR), *_worded(text, _MONTH_DAY_YEAR), *_numeric(text), *_compact(text)]
    taken: list[DateSpan] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= other.start or span.start >= other.end for other in taken):
            taken.append(span)
    return iter(sorted(taken, key=lambda s: s.start))


def _worded(text: str, pattern: re.Pattern[str]) -> Iterator[DateSpan]:
    for match in pattern.finditer(text):
        written = match.group("month").casefold()
        month, day, year = MONTHS.get(written), int(re.sub(r"\D", "", match.group("day"))), match.group("year")
        if month is None:
            continue
        if year is None:
            if len(written) >= YEARLESS_MONTH_LETTERS and _valid(2000, month, day):  # 29 February passes: 2000 was a leap year
                yield DateSpan(match.start(), match.end(), frozenset(), frozenset({(month, day)}), True)
            continue
        days = frozenset(d for y in _years(year.lstrip("'")) if (d := _day(y, month, day)))
        if days:
            yield DateSpan(match.start(), match.end(), days, frozenset(), True)


def _numeric(text: str) -> Iterator[DateSpan]:
    for match in _NUMERIC.finditer(text):
        a, b, c = match.group("a"), match.group("b"), match.group("c")
        if len(a) == 4:  # year first: 2021-03-14, 2021.3.14
            orders = [(a, b, c)]
        elif len(c) >= 2 and len(a) <= 2:  # 14/03/2021 or 03/14/2021 (day or month first)
            orders = [(c, b, a), (c, a, b)]
        else:
            continue
        days = frozenset(d for year, month, day in orders for y in _years(year) if (d := _day(y, int(month), int(day))))
        if days:
            yield DateSpan(match.start(), match.end(), days, frozenset(), False)


def _compact(text: str) -> Iterator[DateSpan]:
    for match in _COMPACT.finditer(text):
        digits = match.group("digits")
        if len(digits) == 8:
            readings = [(digits[:4], digits[4:6], digits[6:]), (digits[4:], digits[2:4], digits[:2]),
                        (digits[4:], digits[:2], digits[2:4])]
        else:
            readings = [(digits[:2], digits[2:4], digits[4:]), (digits[4:], digits[2:4], digits[:2]),
                        (digits[4:], digits[:2], digits[2:4])]
        days = frozenset(d for year, month, day in readings for y in _years(year) if (d := _day(y, int(month), int(day))))
        if days:
            yield DateSpan(match.start(), match.end(), days, frozenset(), False)


def _years(written: str) -> tuple[int, ...]:
    if len(written) == 4:
        return (int(written),)
    return (1900 + int(written), 2000 + int(written))  # "58" could be either century


def _day(year: int, month: int, day: int) -> dt.date | None:
    return dt.date(year, month, day) if 1800 <= year <= 2200 and _valid(year, month, day) else None


def _valid(year: int, month: int, day: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True

