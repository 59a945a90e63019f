"""Radiology report text: sections, negation/uncertainty, and a rule-based finding labeller.

The labeller reads the 14 CheXpert findings out of free text the way a careful reader
would: "no pneumothorax" and "without effusion" are negative, "possible effusion" and
"cannot exclude pneumonia" are uncertain, and an indication ("evaluate for pneumonia")
is never a finding. It is small and explicit on purpose: its cues are listed below and
each status it gives can be traced to the sentence and cue that produced it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twinlens_chest_xray.labels import FINDINGS, NO_FINDING, SUPPORT_DEVICES

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
STATUS_NAMES = {POSITIVE: "positive", NEGATIVE: "negative", UNCERTAIN: "uncertain"}

# Canonical section -> header spellings seen in reports.
SECTION_HEADERS: dict[str, tuple[str, ...]] = {
    "indication": ("INDICATION", "CLINICAL INDICATION", "HISTORY", "CLINICAL HISTORY", "CLINICAL INFORMATION",
                   "REASON FOR EXAMINATION", "REASON FOR EXAM", "REASON FOR STUDY"),
    "comparison": ("COMPARISON", "COMPARISONS"),
    "technique": ("TECHNIQUE", "EXAMINATION", "EXAM", "PROCEDURE"),
    "findings": ("FINDINGS", "FINDING", "REPORT"),
    "impression": ("IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS", "SUMMARY", "OPINION"),
}
# Sections whose statements are findings (what the image shows), not the clinical question.
FINDING_SECTIONS = ("findings", "impression", "body")

_HEADER_TO_SECTION = {header: section for section, headers in SECTION_HEADERS.items() for header in headers}
_HEADER_ALTERNATION = "|".join(sorted(map(re.escape, _HEADER_TO_SECTION), key=len, reverse=True))
# Upper-case headers anywhere (reports are often flattened to one line); any case at a line start.
_HEADER_RE = re.compile(
    rf"(?:(?<![A-Za-z])(?P<upper>{_HEADER_ALTERNATION})\s*:)|(?:^[ \t]*(?P<line>(?i:{_HEADER_ALTERNATION}))[ \t]*:)",
    re.MULTILINE,
)


def parse_sections(text: str) -> dict[str, str]:
    """Split a report into canonical sections; text before any header is `body`."""
    sections: dict[str, str] = {}
    matches = list(_HEADER_RE.finditer(text))
    preamble = text[: matches[0].start()] if matches else text
    if preamble.strip():
        sections["body"] = _squash(preamble)
    for index, match in enumerate(matches):
        header = (match.group("upper") or match.group("line")).upper()
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        content = _squash(text[match.end() : end])
        name = _HEADER_TO_SECTION[header]
        sections[name] = f"{sections[name]} {content}".strip() if name in sections else content
    return sections


def _squash(text: str) -> str:
    return " ".join(text.split())


# -- finding vocabulary -----------------------------------------------------------------
_MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        r"widen\w* (?:of )?(?:the )?(?:superior )?(?:cardio)?mediastin\w*",
        r"(?:cardio)?mediastin\w* (?:silhouette |contour )?(?:is |appears |may be )?(?:\w+ )?(?:widen\w*|enlarged|prominent)",
        r"enlarged (?:cardio)?mediastin\w*",
    ),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"enlarged (?:cardiac silhouette|heart|cardiac contour)",
        r"(?:heart|cardiac silhouette|cardiac size|heart size)\b[^.;,]{0,25}?\benlarge(?:d|ment)",
        r"cardiac enlargement",
    ),
    "Lung Opacity": (
        r"opacit(?:y|ies)", r"opacification", r"infiltrat\w*", r"airspace (?:disease|process)",
        r"hazy (?:density|densities)",
    ),
    "Lung Lesion": (r"nodul\w*", r"\bmass(?:es)?\b", r"lung lesion", r"pulmonary lesion", r"neoplasm", r"tumou?r"),
    "Edema": (r"o?edema", r"vascular congestion", r"kerley", r"interstitial (?:fluid|prominence)"),
    "Consolidation": (r"consolidat\w*", r"air bronchogram\w*"),
    "Pneumonia": (r"pneumonia", r"pneumonitis", r"infectious process", r"\binfection\b"),
    "Atelectasis": (r"atelecta\w*", r"\bcollapse[ds]?\b"),
    "Pneumothorax": (r"pneumothora(?:x|ces)", r"\bptx\b"),
    "Pleural Effusion": (r"effusions?", r"pleural fluid", r"blunting of the (?:\w+ )?costophrenic", r"hydrothorax",
                         r"costophrenic (?:angle |angles )?(?:is |are )?blunt\w*"),
    "Pleural Other": (r"pleural (?:thickening|plaques?|scarring|calcification)", r"fibrothorax"),
    "Fracture": (r"fractur\w*", r"\bfx\b"),
    "Support Devices": (
        r"(?:endotracheal|et|enteric|nasogastric|ng|og|feeding|chest|tracheostomy|dobhoff) tube",
        r"(?:central venous|central|picc|midline|swan[- ]ganz|pulmonary artery|ij|jugular|subclavian) (?:line|catheter)",
        r"\bpicc\b", r"pacemaker", r"\bpacer\b", r"defibrillator", r"\baicd\b", r"sternotomy wires",
        r"support devices?", r"\bcatheter\b", r"\bdrain\b", r"\bstent\b", r"\bport-a-cath\b",
        r"\b(?:ecg|ekg|monitoring) leads\b",
    ),
}
# Plain statements of normality that negate a finding without a negation word.
_NORMAL_STATEMENTS: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (r"(?:heart size|cardiac silhouette|heart)\b[^.;]{0,20}\b(?:normal|within normal limits|unremarkable)",
                     r"normal (?:heart size|cardiac silhouette|cardiac size)"),
    "Enlarged Cardiomediastinum": (
        r"(?:cardio)?mediastinal (?:silhouette|contours?)\b[^.;]{0,25}\b(?:normal|within normal limits|unremarkable)",
        r"normal (?:cardio)?mediastinal (?:silhouette|contours?)"),
    "Lung Opacity": (r"lungs? (?:are|is) clear", r"clear lungs"),
    "Pleural Effusion": (r"costophrenic angles? (?:are |is )?(?:sharp|clear|preserved)",),
}
_COMPILED = {name: [re.compile(p, re.IGNORECASE) for p in pats] for name, pats in _MENTIONS.items()}
_COMPILED_NORMAL = {name: [re.compile(p, re.IGNORECASE) for p in pats] for name, pats in _NORMAL_STATEMENTS.items()}

# -- cues -------------------------------------------------------------------------------
_PRE_UNCERTAIN = re.compile(
    r"\b(?:possible|possibly|probable|probably|likely|may|might|could|questionable|question of|"
    r"suspicious for|suspected|suspect|concern(?:ing)? for|cannot (?:be )?exclude\w*|can ?not exclude|"
    r"cannot rule out|can ?not rule out|not (?:be )?excluded|equivocal|borderline|suggestive of|suggests?|"
    r"consider(?:ed)?|differential|versus|vs|vs\.|perhaps|presumed|worrisome for|compatible with|"
    r"indeterminate|either|rule out|r/o|evaluate for|eval for|assess for|query)\b",
    re.IGNORECASE,
)
_POST_UNCERTAIN = re.compile(
    r"^[^.;]{0,40}?\b(?:cannot be (?:excluded|ruled out)|can ?not be (?:excluded|ruled out)|is not excluded|"
    r"are not excluded|not (?:entirely )?excluded|is (?:possible|questioned|suspected|likely|not certain)|"
    r"may be present)\b"
    # "X versus Y": a differential makes X uncertain only when it follows X directly.
    r"|^\s*(?:versus|vs)\b",
    re.IGNORECASE,
)
_PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|negative for|free of|absence of|absent|ruled out|resolution of|"
    r"resolved|clear of|neither|nor|never|denies|removal of|removed)\b",
    re.IGNORECASE,
)
_POST_NEGATION = re.compile(
    r"^[^.;]{0,30}?\b(?:(?:is|are) (?:not|no longer) (?:seen|present|identified|appreciated|visible|evident)|"
    r"not (?:seen|identified|appreciated|demonstrated)|(?:is|are|has|have) (?:been )?(?:absent|resolved|removed)|"
    r"resolved|ruled out|excluded)\b",
    re.IGNORECASE,
)
# Phrases containing a negation word that do not negate what follows.
_PSEUDO_NEGATION = re.compile(
    r"\b(?:no (?:significant |interval |appreciable |substantial )*change(?:s|d)? (?:in|of)?|"
    r"without (?:significant |interval )*change(?: in)?|not (?:significantly )?changed|no increase in|"
    r"not only|no longer (?:intubated)?)\b",
    re.IGNORECASE,
)
# A negation or hedge does not reach past these.
_SCOPE_END = re.compile(
    r"\b(?:but|however|although|though|except|aside from|apart from|which|whereas|while|there is|there are|"
    r"there has been|is seen|are seen|is noted|are noted|is present|are present|remains?|persists?)\b|[;:]",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\[(])|\n+|(?<=[.!?])$")


@dataclass(frozen=True)
class Mention:
    finding: str
    status: int  # POSITIVE, NEGATIVE or UNCERTAIN
    sentence: str
    section: str
    cue: str | None = None  # the negation or hedge that decided the status

    def to_dict(self) -> dict[str, str | None]:
        return {"finding": self.finding, "status": STATUS_NAMES[self.status], "sentence": self.sentence,
                "section": self.section, "cue": self.cue}


def split_sentences(text: str) -> list[str]:
    text = re.sub(r"\b(vs|approx|Dr|Mr|Mrs|Ms)\.", r"\1", text)
    return [part.strip() for part in _SENTENCE_SPLIT.split(text) if part and part.strip()]


def _status_of(sentence: str, start: int, end: int) -> tuple[int, str | None]:
    """Negation/hedge status of the mention at sentence[start:end].

    Cues are looked for before the mention's end, not its start: a multi-word mention
    ("heart may be enlarged", "mediastinum is not widened") carries its cue inside.
    """
    before = _PSEUDO_NEGATION.sub(" ", sentence[:end])
    scope_ends = list(_SCOPE_END.finditer(before))
    if scope_ends:
        before = before[scope_ends[-1].end() :]
    after = sentence[end:]
    after_scope = _SCOPE_END.search(after)
    after = after[: after_scope.start()] if after_scope else after
    for regex, status in ((_PRE_UNCERTAIN, UNCERTAIN), (_PRE_NEGATION, NEGATIVE)):
        found = list(regex.finditer(before))
        if found:
            return status, found[-1].group(0).lower()
    for regex, status in ((_POST_UNCERTAIN, UNCERTAIN), (_POST_NEGATION, NEGATIVE)):
        found = regex.search(after)
        if found:
            return status, found.group(0).strip().lower()
    return POSITIVE, None


def _sentence_mentions(sentence: str, section: str) -> list[Mention]:
    found: list[Mention] = []
    for finding, patterns in _COMPILED.items():
        spans = [m.span() for p in patterns for m in p.finditer(sentence)]
        for start, end in spans:
            status, cue = _status_of(sentence, start, end)
            found.append(Mention(finding, status, sentence, section, cue))
        for pattern in _COMPILED_NORMAL.get(finding, ()):
            if pattern.search(sentence):
                found.append(Mention(finding, NEGATIVE, sentence, section, "normal"))
    return found


def extract_mentions(text: str | None, *, sections: tuple[str, ...] | None = FINDING_SECTIONS) -> list[Mention]:
    """Every finding mention in the given sections (all sections when `sections` is None)."""
    if not text or not text.strip():
        return []
    mentions: list[Mention] = []
    for section, content in parse_sections(text).items():
        if sections is not None and section not in sections:
            continue
        for sentence in split_sentences(content):
            mentions.extend(_sentence_mentions(sentence, section))
    return mentions


def stated_phrases(text: str | None, phrases: tuple[str, ...]) -> list[str]:
    """Which of `phrases` the report's finding sections state (not negated, not hedged)."""
    found: set[str] = set()
    if not text:
        return []
    for section, content in parse_sections(text).items():
        if section not in FINDING_SECTIONS:
            continue
        for sentence in split_sentences(content):
            for phrase in phrases:
                for match in re.finditer(re.escape(phrase), sentence, re.IGNORECASE):
                    if _status_of(sentence, match.start(), match.end())[0] == POSITIVE:
                        found.add(phrase)
    return sorted(found)


def aggregate(mentions: list[Mention]) -> dict[str, int]:
    """Per finding: positive beats uncertain beats negative (CheXpert's aggregation order)."""
    labels: dict[str, int] = {}
    rank = {POSITIVE: 2, UNCERTAIN: 1, NEGATIVE: 0}
    for mention in mentions:
        current = labels.get(mention.finding)
        if current is None or rank[mention.status] > rank[current]:
            labels[mention.finding] = mention.status
    return labels


def label_report(text: str | None) -> dict[str, int]:
    """CheXpert-style labels of a report: {finding: 1 | 0 | -1}; unmentioned findings absent.

    No Finding is 1 when no finding other than support devices is positive or uncertain.
    """
    labels = aggregate(extract_mentions(text))
    clinical = [name for name in FINDINGS if name not in (NO_FINDING, SUPPORT_DEVICES)]
    if not any(labels.get(name) in (POSITIVE, UNCERTAIN) for name in clinical):
        labels[NO_FINDING] = POSITIVE
    return labels


def labels_to_targets(labels: dict[str, int]) -> tuple[list[str], list[str]]:
    """{finding: 1/0/-1} -> (positives, uncertain) in the schema's finding order."""
    positives = [name for name in FINDINGS if labels.get(name) == POSITIVE]
    uncertain = [name for name in FINDINGS if labels.get(name) == UNCERTAIN]
    return positives, uncertain


def model_text(text: str | None) -> str | None:
    """The report as the model reads it: impression and findings first (they fit the
    encoder's token window), indication after, boilerplate (technique, comparison) dropped."""
    if not text or not text.strip():
        return None
    sections = parse_sections(text)
    order = ("impression", "findings", "body", "indication")
    parts = [f"{name.upper()}: {sections[name]}" for name in order if sections.get(name)]
    return " ".join(parts) or _squash(text)
