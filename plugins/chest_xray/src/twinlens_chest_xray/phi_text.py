"""Replace protected health information in free text with typed placeholders.

Three layers, in this order:
1. Known PHI (known_phi): the names, IDs, dates and addresses the study's own DICOM
   header holds, in whatever form the text writes them.
2. Shapes: what has a recognisable form (a name after a title or a "Patient:" label,
   dates in several languages, record/accession numbers, phone numbers with or without
   an area code, e-mail, street addresses, ages over 89).
3. Bare names (names): a capitalised name in running text, found with the shipped name
   lists and context rules that keep eponyms and words of care.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from itertools import chain

from twinlens_chest_xray.known_phi import KnownPhi
from twinlens_chest_xray.names import scrub_bare_names
from twinlens_chest_xray.phi_dates import find_dates

_MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|"
           r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
# Capital letters of the Latin, Greek and Cyrillic scripts ("José", "Łukasz", "Ærø", "Ñúñez").
_UPPER = "[" + "".join(ch for ch in map(chr, chain(range(0x41, 0x530), range(0x1E00, 0x1F00))) if ch.isupper()) + "]"
_LETTER = r"[^\W\d_]"
_NAME_WORD = rf"{_UPPER}(?:{_LETTER}|['’\-](?={_LETTER}))+"
_INITIAL = rf"{_UPPER}\.?"
# A person's name: optional initials, then one to three capitalised words (a part that the
# known-PHI scrub removed already counts as one: "Dr. [NAME] Testperson").
_PERSON_WORD = rf"(?:\[NAME\]|{_NAME_WORD})"
_PERSON = rf"(?:{_INITIAL}\s+)*{_PERSON_WORD}(?:\s+(?:{_INITIAL}\s+)?{_PERSON_WORD}){{0,2}}"
_STREET_TYPES = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Court|Ct|Way|Place|Pl|"
                 r"Terrace|Circle|Highway|Hwy|Parkway|Pkwy|Square|Sq|Crescent|Close|Row|Grove|Gardens|Mews|Walk|"
                 r"Alley|Trail|Loop)")
# "..., 10115 Berlin", "..., 75002 Paris", "..., D-80331 München": a postcode and its town.
_POSTCODE_TOWN = rf"(?:,?\s*(?:[A-Z]{{1,2}}-)?\d{{4,5}}\s+{_NAME_WORD}(?:[\s\-]{_NAME_WORD})?)?"
_GERMAN_STREET_WORDS = r"straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer"
_GERMAN_STREET = (rf"\b(?:{_UPPER}{_LETTER}*(?:{_GERMAN_STREET_WORDS})|{_NAME_WORD}[\s\-](?i:{_GERMAN_STREET_WORDS}))"
                  rf"\s+\d{{1,4}}[a-z]?\b{_POSTCODE_TOWN}")
_ROMANCE_STREET = (rf"\b\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|boulevard|bd|place|chemin|allée|impasse|quai|"
                   rf"route|cours)\s+(?:(?:de|du|des|la|le|l'|d')\s*)*{_NAME_WORD}(?:[\s\-]{_NAME_WORD})*{_POSTCODE_TOWN}")
_SOUTHERN_STREET = (rf"\b(?:Calle|Avenida|Avda\.?|Plaza|Paseo|Via|Viale|Piazza|Corso|Largo|Rua|Praça|Travessa)\s+"
                    rf"(?:(?:de|del|la|di|della|dos|das|do|da)\s+)*{_NAME_WORD}(?:\s+{_NAME_WORD})*,?\s+(?:n\.?\s*)?"
                    rf"\d{{1,4}}\b{_POSTCODE_TOWN}")
# Words right before a local number that say it is one ("at 555 0199", "paged 555 0134").
_PHONE_CONTEXT = (r"at|on|call|called|phone|tel|telephone|paged|page|pager|bleep|callback|contact|reach|reachable|"
                  r"number|mobile|cell|extension")

# (placeholder, pattern) in the order they are applied: most specific shapes first, so a
# phone number is not half-eaten as an ID, and an address's house number not as a date.
_RULES: list[tuple[str | Callable[[re.Match[str]], str], re.Pattern[str]]] = [
    ("[EMAIL]", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("[ADDRESS]", re.compile(
        rf"\b\d{{1,6}}\s+(?:[A-Z][a-z]+\s+){{1,4}}{_STREET_TYPES}\b\.?"
        rf"(?:,?\s+(?:Apt|Suite|Unit)\.?\s*\w+)?(?:,\s*[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+)?)?"
        rf"(?:,?\s*[A-Z]{{2}})?(?:\s+\d{{5}}(?:-\d{{4}})?)?")),
    ("[ADDRESS]", re.compile(_GERMAN_STREET)),
    ("[ADDRESS]", re.compile(_ROMANCE_STREET)),
    ("[ADDRESS]", re.compile(_SOUTHERN_STREET)),
    # International: a + and country code, then groups, eight digits at least ("+44 20 7946 0958").
    (lambda m: "[PHONE]" if sum(c.isdigit() for c in m.group()) >= 8 else m.group(),
     re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.\-]?\(?\d{1,5}\)?){1,6}(?![\w])")),
    ("[PHONE]", re.compile(r"(?<!\w)(?:\+?\d{1,2}[\s.-]?)?(?:\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]\d{4}(?:\s*(?:x|ext\.?)\s*\d+)?\b")),
    # A local number without its area code ("at 555-0199", "555.0134"): an exchange never
    # starts with 0 or 1, and no measurement, range or date looks like [2-9]dd-dddd.
    ("[PHONE]", re.compile(r"(?<![\w.\-/+])[2-9]\d{2}[-.]\d{4}(?![\w]|[.\-/]\d)(?!\s*(?:cm|mm|ml|cc|mg|kg|%|HU)\b)",
                           re.IGNORECASE)),
    ("\\g<context>[PHONE]", re.compile(rf"(?i)(?P<context>\b(?:{_PHONE_CONTEXT})\s+)[2-9]\d{{2}}\s\d{{4}}\b")),
    ("[PHONE]", re.compile(r"(?i)\b(?:pager|beeper|bleep|phone|tel|telephone|mobile|cell|fax|ext)\.?\s*(?:no\.?|number|#)?"
                           r"\s*:?\s*\d[\d\s.-]{2,}\d\b")),
    # Numeric dates use one separator throughout, so "0.0-10.0 cm" is a range, not a date.
    ("[DATE]", re.compile(r"(?<![\w.\-/])\d{4}(?P<sep>[-/.])\d{1,2}(?P=sep)\d{1,2}(?![\w]|[.\-/]\d)")),
    ("[DATE]", re.compile(r"(?<![\w.\-/])\d{1,2}(?P<sep>[-/.])\d{1,2}(?P=sep)\d{2,4}(?![\w]|[.\-/]\d)")),
    ("[DATE]", re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS}\.?,?\s+\d{{2,4}}\b")),
    ("[DATE]", re.compile(rf"\b{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b")),
    ("[DATE]", re.compile(rf"\b{_MONTHS}\.?\s+\d{{4}}\b")),
    ("[DATE]", re.compile(r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b")),
    ("[MRN]", re.compile(
        r"(?i)\b(?:MRN|medical record(?: number| no\.?| #)?|patient id|pt id|hospital (?:number|no\.?)|"
        r"unit (?:number|no\.?)|NHS(?: number| no\.?)?)\s*[:#]?\s*(?:is\s+)?(?=[A-Z-]*\d)[A-Z0-9][A-Z0-9-]{3,}\b")),
    ("[ACCESSION]", re.compile(
        r"(?i)\b(?:accession|acc)(?:\s*(?:number|no\.?|#))?\s*[:#]?\s*(?:is\s+)?(?=[A-Z-]*\d)[A-Z0-9][A-Z0-9-]{3,}\b")),
    ("[AGE]", re.compile(r"(?i)\b(?:9\d|1[0-4]\d)\s*(?:-\s*)?(?:years?[\s-]old|year-old|yo|y/o|y\.o\.)")),
]
# Names are replaced keeping the title or label that revealed them ("Dr. [NAME]"); titles
# chain ("Herr Dr.") and come in several languages.
_TITLES = (r"Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Doctor|Nurse|Sister|Herr|Frau|Hr|Sr|Sra|Srta|Sig|Sig\.ra|Signor|Signora|"
           r"Dott|Dott\.ssa|Dra|Mme|Mlle|Madame|Monsieur|Mevr|Dhr|Mevrouw")
_TITLED_NAME = re.compile(rf"\b(?P<title>(?:(?:{_TITLES})\.?\s+)+){_PERSON}")
_LABELLED_NAME = re.compile(
    rf"(?P<title>\b(?i:patient name|patient|name|pt|signed by|electronically signed by|dictated by|"
    rf"reported by|read by|attending|resident|radiologist|physician|referring physician|referred by|"
    rf"discussed with|d/w|called to|communicated to|notified)\s*:?\s*){_PERSON}"
)
# A capitalised name written right before an identifier ("Jane Roe, MRN 123", "Jane Roe DOB ...").
_NAME_BEFORE_ID = re.compile(rf"\b{_PERSON}(?=,?\s*\(?\s*(?:\[MRN\]|\[ACCESSION\]|\[ID\]|DOB\b|D\.O\.B\.|born\b))")
# Long digit runs that survive the rules above are identifiers of some kind.
_LONG_NUMBER = re.compile(r"\b\d{7,}\b")


def scrub_text(text: str | None, known: KnownPhi | None = None) -> str | None:
    """Return `text` with PHI replaced by [NAME], [DATE], [MRN], [ACCESSION], [PHONE],
    [ADDRESS], [EMAIL], [AGE] or [ID] placeholders; `known` is what the study's DICOM
    header says about the patient (known_phi.known_phi_from_dicom)."""
    if text is None:
        return None
    text = unicodedata.normalize("NFC", text)  # "José" typed as e + accent is one letter
    if known:
        text = known.scrub(text)
    for step in _SHAPE_STEPS:
        text = step(text)
    text = _NAME_BEFORE_ID.sub("[NAME]", text)
    text = _TITLED_NAME.sub(lambda m: f"{m.group('title')}[NAME]", text)
    text = _LABELLED_NAME.sub(_replace_labelled, text)
    text = scrub_bare_names(text)
    return _LONG_NUMBER.sub("[ID]", text)


def _worded_dates(text: str) -> str:
    """Dates whose month is a word, in any of the languages phi_dates reads ("3. Januar 2022",
    "2 de marzo de 2020", "05-Sep-1973"), when the day, month and year make a real date."""
    pieces, last = [], 0
    for span in find_dates(text):
        if span.written_month and span.days:
            pieces += [text[last:span.start], "[DATE]"]
            last = span.end
    return "".join(pieces) + text[last:]


def _rule(placeholder: str | Callable[[re.Match[str]], str], pattern: re.Pattern[str]) -> Callable[[str], str]:
    return lambda text: pattern.sub(placeholder, text)


# The phones first (their digits are not dates), then worded dates before the numeric
# rules (so "05-Sep-1973" goes whole), then the rest in _RULES order.
_PHONES_END = next(i for i, (placeholder, _) in enumerate(_RULES) if placeholder == "[DATE]")
_SHAPE_STEPS: list[Callable[[str], str]] = [
    *(_rule(p, r) for p, r in _RULES[:_PHONES_END]), _worded_dates, *(_rule(p, r) for p, r in _RULES[_PHONES_END:])]


def _replace_labelled(match: re.Match[str]) -> str:
    # "Patient has..." or "discussed with the team": a label followed by an ordinary word.
    name = match.group(0)[len(match.group("title")) :]
    first = name.split()[0]
    if first.lower() in _NOT_NAMES:
        return match.group(0)
    return f"{match.group('title')}[NAME]"


# Capitalised words that commonly follow the labels above and are not names.
_NOT_NAMES = {"the", "a", "an", "has", "had", "is", "was", "with", "history", "presents", "reports", "denies",
              "states", "status", "care", "team", "clinical", "radiology", "emergency", "on", "in", "at", "and",
              "of", "for", "who", "icu", "er", "ed", "floor", "chest", "left", "right", "there", "this", "he",
              "she", "they", "no", "not", "also", "dr", "mr", "mrs", "ms", "miss", "doctor", "prof"}
