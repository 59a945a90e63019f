"""Replace protected health information in free text with typed placeholders.

Pattern-based: it catches what has a recognisable shape (a name after a title or a
"Patient:" label, dates, record/accession numbers, phone numbers, e-mail, street
addresses, ages over 89). A bare name in running text with no title or label is not
caught; the README says so.
"""

from __future__ import annotations

import re

_MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|"
           r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_NAME_WORD = r"[A-Z][a-zA-Z'\-]+"
_INITIAL = r"[A-Z]\.?"
# A person's name: optional initials, then one to three capitalised words.
_PERSON = rf"(?:{_INITIAL}\s+)*{_NAME_WORD}(?:\s+(?:{_INITIAL}\s+)?{_NAME_WORD}){{0,2}}"
_STREET_TYPES = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Court|Ct|Way|Place|Pl|"
                 r"Terrace|Circle|Highway|Hwy|Parkway|Pkwy|Square|Sq)")

# (placeholder, pattern) in the order they are applied: most specific shapes first, so a
# phone number is not half-eaten as an ID, and an address's house number not as a date.
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("[EMAIL]", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("[ADDRESS]", re.compile(
        rf"\b\d{{1,6}}\s+(?:[A-Z][a-z]+\s+){{1,4}}{_STREET_TYPES}\b\.?"
        rf"(?:,?\s+(?:Apt|Suite|Unit)\.?\s*\w+)?(?:,\s*[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+)?)?"
        rf"(?:,?\s*[A-Z]{{2}})?(?:\s+\d{{5}}(?:-\d{{4}})?)?")),
    ("[PHONE]", re.compile(r"(?<!\w)(?:\+?\d{1,2}[\s.-]?)?(?:\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]\d{4}(?:\s*(?:x|ext\.?)\s*\d+)?\b")),
    ("[PHONE]", re.compile(r"(?i)\b(?:pager|beeper|phone|tel|telephone|fax|ext)\.?\s*(?:no\.?|number|#)?\s*:?\s*\d[\d\s.-]{2,}\d\b")),
    ("[DATE]", re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")),
    ("[DATE]", re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b")),
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
# Names are replaced keeping the title or label that revealed them ("Dr. [NAME]").
_TITLED_NAME = re.compile(rf"\b(?P<title>(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Doctor|Nurse|Sister)\.?\s+){_PERSON}")
_LABELLED_NAME = re.compile(
    rf"(?P<title>\b(?i:patient name|patient|name|pt|signed by|electronically signed by|dictated by|"
    rf"reported by|read by|attending|resident|radiologist|physician|referring physician|referred by|"
    rf"discussed with|d/w|called to|communicated to|notified)\s*:?\s*){_PERSON}"
)
# A capitalised name written right before an identifier ("Jane Roe, MRN 123", "Jane Roe DOB ...").
_NAME_BEFORE_ID = re.compile(rf"\b{_PERSON}(?=,?\s*\(?\s*(?:\[MRN\]|\[ACCESSION\]|DOB\b|D\.O\.B\.|born\b))")
# Long digit runs that survive the rules above are identifiers of some kind.
_LONG_NUMBER = re.compile(r"\b\d{7,}\b")


def scrub_text(text: str | None) -> str | None:
    """Return `text` with PHI replaced by [NAME], [DATE], [MRN], [ACCESSION], [PHONE],
    [ADDRESS], [EMAIL], [AGE] or [ID] placeholders."""
    if text is None:
        return None
    for placeholder, pattern in _RULES:
        text = pattern.sub(placeholder, text)
    text = _NAME_BEFORE_ID.sub("[NAME]", text)
    text = _TITLED_NAME.sub(lambda m: f"{m.group('title')}[NAME]", text)
    text = _LABELLED_NAME.sub(_replace_labelled, text)
    return _LONG_NUMBER.sub("[ID]", text)


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
