"""The word lists shipped in the package's data/ folder, read once on first use.

first_names.txt, surnames.txt: names in many languages (built by tools/build_name_lists.py).
not_names.txt: words of reports and care that are never taken for a bare name.
eponyms.txt: names that are also diseases, signs and devices ("Hodgkin", "Swan", "Kerley").
All lookups are by `str.casefold()`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def words(list_name: str) -> frozenset[str]:
    text = resources.files("twinlens_chest_xray").joinpath("data", f"{list_name}.txt").read_text(encoding="utf-8")
    found: set[str] = set()
    for line in text.splitlines():
        found.update(word.casefold() for word in line.split("#", 1)[0].split())
    return frozenset(found)


def is_name_word(word: str) -> bool:
    """In the given-name or surname list; a hyphenated word when each part is."""
    folded = word.casefold()
    if folded in words("first_names") or folded in words("surnames"):
        return True
    parts = folded.split("-")
    return len(parts) > 1 and all(p in words("first_names") or p in words("surnames") for p in parts)


def is_given_name(word: str) -> bool:
    return all(part in words("first_names") for part in word.casefold().split("-"))


def is_common_word(word: str) -> bool:
    return word.casefold() in words("not_names")


def is_eponym(word: str) -> bool:
    return all(part in words("eponyms") for part in word.casefold().split("-"))
