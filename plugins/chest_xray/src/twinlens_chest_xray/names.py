"""Bare names in running text: a name with no title, label or header to give it away.

"Giulia Bianchi tolerated the procedure", "the daughter, Sabine Hoffmann", "Kowalczyk's
lungs", "Zyx, Quentin". Offline, from shipped word lists (word_lists): given names and
surnames of many languages, words of care that are never names, and eponyms. A name is
found by its shape and its context, never by the list alone:

- two or more capitalised words in a row (particles such as "de", "van" and initials
  may sit between) where at least one is a listed name and none is a word of care:
  "José García Pérez", "Jan-Willem de Vries", "Tanaka Hiroshi"; in capitals
  ("MEHMET YILMAZ") every word must be a listed name;
- one listed name with an initial ("M. Smith"), before a verb people do ("Kowalski
  tolerated"), with a possessive ("Kowalski's lungs"), after a relative ("her son
  Marco"), or written surname-first before a given name ("Zyx, Quentin").

Eponyms stay when a clinical word follows: "Hodgkin lymphoma", "Parkinson's disease",
"Swan-Ganz catheter", "Kerley B lines". "Down syndrome" stays because "Down" is a word
of care, not a name. What is found becomes [NAME].
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twinlens_chest_xray.word_lists import is_common_word, is_eponym, is_given_name, is_name_word

_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)
PARTICLES = frozenset({"de", "da", "di", "del", "della", "der", "den", "van", "von", "ten", "ter", "du", "le", "la",
                       "dos", "das", "al", "el", "bin", "ibn", "ben", "y", "zu"})
# What people do in a report's sentences (a disease or a device does none of it).
PERSON_VERBS = frozenset({
    "tolerated", "tolerates", "was", "is", "has", "had", "reports", "reported", "states", "stated", "denies", "denied",
    "complains", "complained", "presents", "presented", "returned", "returns", "arrived", "arrives", "underwent",
    "received", "came", "comes", "lives", "lived", "agreed", "agrees", "consented", "declined", "refused", "says",
    "said", "feels", "felt", "walked", "fell", "smokes", "smoked", "works", "worked", "cannot", "could", "would",
    "will", "wants", "wanted", "asked", "asks", "requested", "attended", "attends", "visited", "called",
})
RELATIONS = frozenset({"daughter", "son", "wife", "husband", "mother", "father", "brother", "sister", "partner",
                       "spouse", "friend", "caregiver", "carer", "neighbour", "neighbor", "nephew", "niece", "aunt",
                       "uncle", "grandson", "granddaughter", "guardian", "mum", "mom", "dad", "fiancé", "fiancée"})
# Words after an eponym that make it a disease, sign, device or method, not a person.
CLINICAL_CONTEXT = frozenset({
    "syndrome", "disease", "disorder", "lymphoma", "sarcoma", "tumor", "tumour", "sign", "signs", "line", "lines",
    "tube", "tubes", "catheter", "catheters", "drain", "drains", "filter", "valve", "hernia", "criteria",
    "classification", "score", "scale", "fracture", "lesion", "node", "nodes", "angle", "view", "position",
    "maneuver", "manoeuvre", "method", "procedure", "repair", "rod", "rods", "clip", "clips", "port", "sump", "hump",
    "space", "sulcus", "point", "triad", "phenomenon", "effect", "test", "palsy", "ulcer", "esophagus", "oesophagus",
    "granulomatosis", "arteritis", "cell", "cells", "type", "stage", "needle", "device", "pump", "shunt", "operation",
    "fundoplication", "myotomy", "anastomosis", "diverticulum", "pouch", "body", "bodies", "dementia", "ring",
    "anomaly", "malformation", "deformity", "sequence", "technique", "approach", "incision", "esophagectomy",
    "ligament", "membrane", "tear", "chorea", "encephalopathy", "cardiomyopathy", "thyroiditis", "infection",
})
NAME = "[NAME]"


@dataclass
class _Token:
    start: int
    end: int
    word: str  # without a possessive 's
    possessive: bool
    text: str  # the text before this token, back to the previous one
    placeholder: bool = False  # the NAME of an earlier rule's "[NAME]"

    @property
    def initial(self) -> bool:
        return len(self.word) == 1 and self.word.isupper()

    @property
    def capitalised(self) -> bool:
        return self.word[0].isupper() and not self.word.isupper() and len(self.word) > 1

    @property
    def in_capitals(self) -> bool:
        return self.word.isupper() and len(self.word) > 1

    @property
    def candidate(self) -> bool:
        """Could be part of a name: capitalised, not a word of care, not a placeholder."""
        return (self.capitalised or self.in_capitals) and not is_common_word(self.word) and not self.placeholder


def scrub_bare_names(text: str) -> str:
    """`text` with the bare names found replaced by [NAME]."""
    tokens = _tokens(text)
    spans = _name_spans(tokens)
    if not spans:
        return text
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], NAME]
        last = _before_possessive(text, end)  # "Kowalski's lungs" -> "[NAME]'s lungs"
    return "".join(pieces) + text[last:]


def _before_possessive(text: str, end: int) -> int:
    return end - 2 if _POSSESSIVE.search(text[max(0, end - 2):end]) else end


def _tokens(text: str) -> list[_Token]:
    tokens, previous_end = [], 0
    for match in _WORD.finditer(text):
        word = match.group()
        possessive = bool(_POSSESSIVE.search(word)) and len(word) > 2
        placeholder = word == "NAME" and text[match.start() - 1:match.start()] == "[" and text[match.end():match.end() + 1] == "]"
        tokens.append(_Token(match.start(), match.end(), _POSSESSIVE.sub("", word) if possessive else word, possessive,
                             text[previous_end:match.start()], placeholder))
        previous_end = match.end()
    return tokens


def _name_spans(tokens: list[_Token]) -> list[tuple[int, int]]:
    spans, index = [], 0
    while index < len(tokens):
        run_end = _run_end(tokens, index)
        found = _judge_run(tokens, index, run_end)
        if found is not None:
            spans.append(found)
            index = _token_after(tokens, found[1])
        else:
            index += 1
    return spans


def _run_end(tokens: list[_Token], start: int) -> int:
    """One past the last token of the run of name-shaped tokens starting at `start`:
    candidates and initials joined by spaces (or a particle), "Jan-Willem de Vries"."""
    first = tokens[start]
    if not (first.candidate or first.initial or first.placeholder):
        return start
    end = start + 1
    while end < len(tokens):
        previous, token = tokens[end - 1], tokens[end]
        if _joined(previous, token) and _same_style(first, token) and not previous.possessive:
            end += 1
        elif _is_particle(token) and end + 1 < len(tokens) and _joined(previous, token) \
                and _joined(token, tokens[end + 1]) and tokens[end + 1].candidate:
            end += 2
        else:
            break
    return end


def _joined(previous: _Token, token: _Token) -> bool:
    """Only spaces lie between the two tokens (or the full stop of an initial, or the
    brackets of a [NAME])."""
    between = token.text[1:] if previous.placeholder else token.text
    between = (between[:-1] if token.placeholder else between).strip()
    return (between == "" or between == "." and previous.initial) and "\n\n" not in token.text


def _same_style(first: _Token, token: _Token) -> bool:
    """Capitalised words and words in capitals are not one name ("ECG Maria"); initials
    and an earlier [NAME] go with either."""
    if token.placeholder:
        return True
    if token.initial or first.initial or first.placeholder:
        return token.initial or token.candidate
    return token.candidate and token.in_capitals == first.in_capitals


def _is_particle(token: _Token) -> bool:
    return token.word.islower() and token.word in PARTICLES


def _judge_run(tokens: list[_Token], start: int, end: int) -> tuple[int, int] | None:
    run = tokens[start:end]
    candidates = [t for t in run if t.candidate]
    if not candidates:
        return None
    span = (run[0].start - run[0].placeholder, run[-1].end + run[-1].placeholder)  # a [NAME] whole
    if any(t.placeholder for t in run):  # "Dr. [NAME] Testperson": the rest of a name found already
        # ...but not an acronym after it ("[NAME] MI in 2010"), nor an eponym's disease.
        rest_of_name = all(t.capitalised or is_name_word(t.word) for t in candidates)
        return span if rest_of_name and not _is_eponym_run(candidates, tokens, end) else None
    if len(candidates) >= 2:
        return span if _is_name_run(candidates, tokens, end) else None
    return _single_name(tokens, start, end, candidates[0])


def _is_eponym_run(candidates: list[_Token], tokens: list[_Token], end: int) -> bool:
    return all(is_eponym(t.word) for t in candidates) and _clinical_follows(tokens, end)


def _is_name_run(candidates: list[_Token], tokens: list[_Token], end: int) -> bool:
    if _is_eponym_run(candidates, tokens, end):
        return False
    if all(t.in_capitals for t in candidates):  # capitals are headers and acronyms as often as names
        return all(is_name_word(t.word) for t in candidates)
    return any(is_name_word(t.word) for t in candidates)


def _single_name(tokens: list[_Token], start: int, end: int, candidate: _Token) -> tuple[int, int] | None:
    """A run with one name-shaped word: a name only with an initial or in a person's context."""
    span = (tokens[start].start, tokens[end - 1].end)
    surname_first = _surname_before_given_name(tokens, end)
    if surname_first is not None and not is_eponym(candidate.word):
        return (span[0], surname_first)
    if not is_name_word(candidate.word) or not candidate.capitalised:
        return None
    if is_eponym(candidate.word) and _clinical_follows(tokens, end):
        return None
    has_initial = end - start > 1
    person_context = (_verb_follows(tokens, end) or candidate.possessive or _relative_before(tokens, start))
    return span if has_initial or person_context else None


def _surname_before_given_name(tokens: list[_Token], end: int) -> int | None:
    """"Zyx, Quentin": the end of the given name when the run is followed by ", Given"."""
    if end >= len(tokens) or tokens[end].text.strip() != ",":
        return None
    given = tokens[end]
    if given.capitalised and not is_common_word(given.word) and is_given_name(given.word):
        return given.end
    return None


def _clinical_follows(tokens: list[_Token], end: int) -> bool:
    """A clinical word within the next two words (a letter such as Kerley's "B" skipped)."""
    following = [t for t in tokens[end:end + 3] if not t.initial][:2]
    return any(t.word.casefold() in CLINICAL_CONTEXT for t in following)


def _verb_follows(tokens: list[_Token], end: int) -> bool:
    return end < len(tokens) and tokens[end].text.strip() == "" and tokens[end].word in PERSON_VERBS


def _relative_before(tokens: list[_Token], start: int) -> bool:
    """"her son Marco", "the daughter, Ana", "his wife is Maria"."""
    for back in (1, 2):
        if start - back < 0:
            return False
        before = tokens[start - back]
        if before.word.casefold() in RELATIONS:
            return tokens[start].text.strip() in ("", ",", ":") and (back == 1 or tokens[start - 1].word in ("is", "named"))
    return False


def _token_after(tokens: list[_Token], position: int) -> int:
    return next((i for i, t in enumerate(tokens) if t.start >= position), len(tokens))
