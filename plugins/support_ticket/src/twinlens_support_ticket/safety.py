"""Spotting burn / smoke / fire mentions in ticket text and in text read from the photo.

A mention escalates a ticket whatever the model says, so the patterns lean towards
catching too much; the one exception is an explicit negation right before the word
("no smoke", "not burning", "without any burn marks"), which customers write often
when they describe what did *not* happen.
"""

from __future__ import annotations

import re

_HAZARD = re.compile(
    r"\b("
    r"smok(?:e|es|ed|ing|in|y)"
    r"|burn(?:s|t|ed|ing|in|ign)?|scorch(?:ed|ing)?|singed"
    r"|fire|flames?|caught\s+fire|on\s+fire"
    r"|melt(?:s|ed|ing)?"
    r"|sparks?|sparking"
    r"|explod(?:e|ed|es|ing)"
    r")\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(no|not|never|without|nor|zero)\b|n't\b", re.IGNORECASE)
# How many words before a hazard word a negation still applies to ("no sign of any smoke").
_NEGATION_WINDOW = 4


def hazard_mentions(*texts: str | None) -> list[str]:
    """Hazard words found in the given texts (lower-cased, in order, de-duplicated)."""
    found: list[str] = []
    for text in texts:
        if not text:
            continue
        for match in _HAZARD.finditer(text):
            word = match.group(0).lower()
            if not _negated(text, match.start()) and word not in found:
                found.append(word)
    return found


def _negated(text: str, start: int) -> bool:
    # Only words of the same sentence count: "No idea why. It smells burnt." is a mention.
    sentence = re.split(r"[.!?;\n]", text[:start])[-1]
    preceding = re.findall(r"[\w']+", sentence)[-_NEGATION_WINDOW:]
    return any(_NEGATION.search(word) for word in preceding)
