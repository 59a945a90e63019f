"""Known-PHI cross-scrub: what the study's DICOM header says about the patient, removed
from every text of the same study.

A report may name the patient without any title or label ("Quentin Zyx tolerated the
exam", "Zyx, Quentin;"), give the MRN without its dashes or the birth date in another
format. Patterns cannot know that "Zyx" is a name; the header does. `KnownPhi` holds every
person name (PN attributes anywhere in the file, all three PN component groups), every
identifier, every date and the addresses the header carries, and `scrub` replaces each of
them in a text in the ways they get written:

- names: each part alone in any case (a part that is also a common word, such as "Will",
  only when capitalised), with or without accents or German transliteration ("Müller",
  "Muller", "Mueller"), hyphenated parts whole or apart, and the initials beside the name
  ("M. I. Thistlewood", "Thistlewood M").
- identifiers: the same letters and digits with any separators or none ("FK-448-2913",
  "fk 448 2913", "FK4482913"), and their digit runs alone ("4482913").
- dates: any span `phi_dates.find_dates` reads as one of the header's days ("19580217",
  "17.02.1958", "2/17/58", "17-Feb-1958", "17. Februar 1958"), and a day and month without
  a year when they are a header date's.
- addresses and institutions: each comma-separated part as a phrase, and an address's
  distinctive words alone ("Jamtown").
"""

from __future__ import annotations

import datetime as dt
import io
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from twinlens_chest_xray.phi_dates import find_dates
from twinlens_chest_xray.word_lists import is_common_word

IDENTIFIER_KEYWORDS = frozenset({
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "AdmissionID", "MedicalRecordLocator",
    "IssuerOfPatientID", "RequestedProcedureID", "PerformedProcedureStepID", "ScheduledProcedureStepID",
    "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest", "StationName",
    "DeviceSerialNumber", "PatientTelephoneNumbers", "ReferringPhysicianTelephoneNumbers",
    "PersonTelephoneNumbers", "InsurancePlanIdentification",
})
ADDRESS_KEYWORDS = frozenset({"PatientAddress", "ReferringPhysicianAddress", "InstitutionAddress", "PersonAddress",
                              "RegionOfResidence"})
INSTITUTION_KEYWORDS = frozenset({"InstitutionName", "InstitutionalDepartmentName"})
# Too short to stand alone without eating ordinary text: initials, two-digit numbers.
MIN_NAME_PART, MIN_IDENTIFIER, MIN_DIGIT_RUN, MIN_ADDRESS_WORD = 2, 4, 5, 4
_SEPARATORS = r"[\s\-./_:#]*"
_STREET_WORDS = frozenset({"street", "st", "road", "rd", "avenue", "ave", "lane", "ln", "row", "drive", "dr", "way",
                           "court", "ct", "place", "pl", "close", "crescent", "terrace", "square", "sq", "grove",
                           "gardens", "apt", "apartment", "suite", "unit", "flat", "floor", "house", "north", "south",
                           "east", "west", "rue", "via", "calle", "straße", "strasse"})
_GERMAN_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"})


@dataclass(frozen=True)
class KnownPhi:
    """What a DICOM header says about who the study is of."""

    name_parts: frozenset[str] = frozenset()  # every part of every person name, as written
    initials: frozenset[str] = frozenset()  # first letters of the given and middle names
    identifiers: frozenset[str] = frozenset()
    dates: frozenset[dt.date] = frozenset()
    addresses: frozenset[str] = frozenset()  # comma-separated address parts, as written
    institutions: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.name_parts or self.identifiers or self.dates or self.addresses or self.institutions)

    def scrub(self, text: str) -> str:
        """`text` with every known place, identifier, date and name replaced by a placeholder.
        Identifiers go before dates (an accession number may hold a date's digits) and
        places before names (a street may be named after a person)."""
        if not self or not text:
            return text
        text = unicodedata.normalize("NFC", text)  # as the header's names are compared
        patterns = _compiled(self)
        for placeholder, pattern in patterns:
            text = pattern.sub(placeholder, text)
        text = _replace_known_dates(text, self.dates)
        return _absorb_initials(text, self.initials)


def known_phi_from_dicom(data: bytes) -> KnownPhi:
    """The header's PHI; an unreadable header holds none (the upload check reports it)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)  # force: no preamble needed
        return known_phi_from_dataset(ds)
    except Exception:  # pydicom raises many kinds on garbage; check_image_format has judged the file
        return KnownPhi()


def known_phi_from_dataset(ds: Dataset) -> KnownPhi:
    """Every person name, identifier, date, address and institution of `ds`, nested
    sequences included."""
    parts, initials, identifiers, dates, addresses, institutions = set(), set(), set(), set(), set(), set()
    for element in ds.iterall():
        keyword = element.keyword
        if element.VR == "PN":
            for value in _values(element.value):
                person_parts, person_initials = _person_name_parts(value)
                parts |= person_parts
                initials |= person_initials
        elif keyword in IDENTIFIER_KEYWORDS:
            identifiers |= {v.strip() for v in _values(element.value) if v.strip()}
        elif element.VR in ("DA", "DT"):
            dates |= {d for v in _values(element.value) if (d := _header_date(v))}
        elif keyword in ADDRESS_KEYWORDS:
            addresses |= {piece.strip() for v in _values(element.value) for piece in re.split(r"[,;\n\r^]+", v)
                          if piece.strip()}
        elif keyword in INSTITUTION_KEYWORDS:
            institutions |= {v.strip() for v in _values(element.value) if v.strip()}
    return KnownPhi(frozenset(parts), frozenset(initials), frozenset(identifiers), frozenset(dates),
                    frozenset(addresses), frozenset(institutions))


def _values(value) -> list[str]:
    """An element's values as NFC text (as texts are compared), empty ones left out."""
    if value is None or value == "":
        return []
    values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [unicodedata.normalize("NFC", str(v)) for v in values if v not in (None, "")]


def _person_name_parts(value) -> tuple[set[str], set[str]]:
    """Family, given and middle name parts of every component group ("Yamada^Tarou=山田^太郎");
    prefixes and suffixes ("Dr", "Jr") are titles, not the person."""
    parts, initials = set(), set()
    for group in unicodedata.normalize("NFC", str(value)).split("="):
        components = group.split("^")
        for position, component in enumerate(components[:3]):
            for word in component.split():
                parts.add(word)
                if position > 0 and word[0].isupper():  # cased scripts only: CJK names have no initials
                    initials.add(word[0].upper())
    return {p for p in parts if len(p.replace("-", "")) >= MIN_NAME_PART or _is_cjk(p)}, initials


def _header_date(value: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


# -- compiled patterns, once per header --------------------------------------------------
@lru_cache(maxsize=256)
def _compiled(known: KnownPhi) -> tuple[tuple[str, re.Pattern[str]], ...]:
    rules = []
    place_pattern = _alternation(_address_phrases(known.addresses) | known.institutions, case_insensitive=True)
    if place_pattern:
        rules.append(("[ADDRESS]", place_pattern))
    identifier_pattern = _alternation(_identifier_forms(known.identifiers), case_insensitive=True, raw=True)
    if identifier_pattern:
        rules.append(("[ID]", identifier_pattern))
    for case_insensitive, forms in _name_forms(known.name_parts):
        pattern = _alternation(forms, case_insensitive=case_insensitive, possessive=True)
        if pattern:
            rules.append(("[NAME]", pattern))
    cjk = [re.escape(p) for p in known.name_parts if _is_cjk(p)]
    if cjk:  # no spaces between CJK words: match anywhere
        rules.append(("[NAME]", re.compile("|".join(sorted(cjk, key=len, reverse=True)))))
    return tuple(rules)


def _alternation(forms: set[str], *, case_insensitive: bool, raw: bool = False,
                 possessive: bool = False) -> re.Pattern[str] | None:
    """One pattern for whole-word occurrences of any of `forms` (regex sources when `raw`)."""
    sources = sorted(forms if raw else {_flexible(f) for f in forms}, key=len, reverse=True)
    if not sources:
        return None
    tail = r"(?:['’]s)?" if possessive else ""
    flags = re.IGNORECASE if case_insensitive else 0
    return re.compile(rf"(?<![^\W_])(?:{'|'.join(sources)}){tail}(?![^\W_])", flags)


def _flexible(phrase: str) -> str:
    """A phrase as a pattern where spaces and hyphens between its words may be any of them."""
    words = re.split(r"[\s\-]+", phrase.strip())
    return r"[\s\-]*".join(re.escape(w) for w in words if w)


def _name_forms(parts: frozenset[str]) -> list[tuple[bool, set[str]]]:
    """(case-insensitive?, spellings): a part that is also a common word ("Will", "May")
    is matched only as written with a capital, so "will" and "may" in a sentence stay."""
    anywhere, capitalised = set(), set()
    for part in parts:
        if _is_cjk(part):
            continue
        for spelling in _spellings(part):
            for piece in {spelling, *spelling.split("-")}:
                if len(piece) < MIN_NAME_PART:
                    continue
                if is_common_word(piece):
                    capitalised |= {piece.capitalize(), piece.upper()}
                else:
                    anywhere.add(piece)
    return [(True, anywhere), (False, capitalised)]


def _spellings(part: str) -> set[str]:
    folded = "".join(ch for ch in unicodedata.normalize("NFKD", part) if not unicodedata.combining(ch))
    return {part, folded, part.translate(_GERMAN_TRANSLITERATION)}


def _identifier_forms(identifiers: frozenset[str]) -> set[str]:
    """Regex sources: each identifier's letters and digits with any separators between,
    its separated groups, and its digits alone, when long enough to be unambiguous."""
    forms = set()
    for identifier in identifiers:
        characters = re.sub(r"[\W_]", "", identifier)
        candidates = {characters, re.sub(r"\D", "", identifier)}
        candidates |= {g for g in re.split(r"[\W_]+", identifier) if any(ch.isdigit() for ch in g)}
        for candidate in candidates:
            digits = sum(ch.isdigit() for ch in candidate)
            if len(candidate) >= MIN_IDENTIFIER and (digits >= MIN_DIGIT_RUN or digits and not candidate.isdigit()):
                forms.add(_SEPARATORS.join(re.escape(ch) for ch in candidate))
    return forms


def _address_phrases(addresses: frozenset[str]) -> set[str]:
    """Each address part ("9 Marmalade Row") and its distinctive words ("Marmalade")."""
    phrases = set()
    for place in addresses:
        phrases.add(place)
        for word in re.findall(r"[^\W\d_][^\W\d_'\-]*", place):
            if len(word) >= MIN_ADDRESS_WORD and word.casefold() not in _STREET_WORDS and not is_common_word(word):
                phrases.add(word)
    return phrases


def _replace_known_dates(text: str, dates: frozenset[dt.date]) -> str:
    if not dates:
        return text
    month_days = {(d.month, d.day) for d in dates}
    pieces, last = [], 0
    for span in find_dates(text):
        if span.days & dates or span.month_days & month_days:
            pieces += [text[last:span.start], "[DATE]"]
            last = span.end
    return "".join(pieces) + text[last:]


def _absorb_initials(text: str, initials: frozenset[str]) -> str:
    """Initials written beside a removed name belong to it: "M. I. [NAME]", "[NAME] M" -> "[NAME]"."""
    if not initials or "[NAME]" not in text:
        return text
    letters = "".join(sorted(initials))
    before = re.compile(rf"(?<![\w.])(?:[{letters}](?:\.\s*|\s+)){{1,3}}(?=\[NAME\])")
    # After the name, one bare initial or dotted ones: "[NAME] MI" may be a myocardial infarction.
    after = re.compile(rf"(?<=\[NAME\])(?:(?:,?\s*[{letters}]\.){{1,3}}|,?\s+[{letters}](?![\w.]))")
    return after.sub("", before.sub("", text))


def _is_cjk(word: str) -> bool:
    return any(unicodedata.east_asian_width(ch) == "W" for ch in word)
