"""Ticket wording for generated tickets: specific and vague, with typos and asides.

Specific wording names the fault in one of many ways (each fault's sentences and cue
sentences are in its row of `faults`); vague wording ("it stopped working", "see photo")
says nothing about it, which is what makes the photo necessary. Cue sentences carry what
the severity depends on: the device being unusable, a minor glitch, or a burn/smoke hazard.
"""

from __future__ import annotations

import random

DEVICE_WORDS = {
    "phone": ["phone", "mobile", "smartphone", "handset"],
    "tablet": ["tablet", "ipad-style tablet", "tab"],
    "laptop": ["laptop", "notebook", "computer"],
    "headphones": ["headphones", "headset", "cans"],
    "watch": ["watch", "smartwatch", "fitness watch"],
}

# Says nothing about the fault. "Functional" vagueness fits a device that stopped working.
VAGUE_FUNCTIONAL = [
    "it stopped working",
    "It stopped working. Please help.",
    "doesn't work anymore, see attached photo",
    "My {dev} stopped working {when}.",
    "Not working. Photo attached.",
    "something is wrong with it, please fix",
    "it broke",
    "Stopped working properly, what do I do?",
]
VAGUE_NEUTRAL = [
    "Please see the attached photo.",
    "what can you do about this?",
    "This is what it looks like now. Is this covered?",
    "Not happy with this, look at the picture.",
    "see photo",
    "Please advise, picture attached.",
    "Can you help me with my {dev}?",
]

SUBJECT_VAGUE = ["Help", "Problem", "Issue with my {dev}", "broken", "Support request", "RE: my order", "urgent", "{model}"]

HAZARD = [
    "It smelled like burning when I plugged it in.",
    "I saw a little smoke coming out of it!",
    "There's a scorched mark near the port and it got really hot.",
    "it started smoking while charging",
]
WHEN = ["yesterday", "last week", "this morning", "two days ago", "on Sunday", "after a week"]
OPENERS = ["", "", "Hi,", "Hello support,", "hey", "Good morning,", "Dear team,"]
CLOSERS = ["", "", "Thanks", "Thank you.", "Please advise.", "Regards", "Sent from my phone", "thx"]
ASIDES = [
    "", "", "", "Order #{order}.", "I bought it {months} months ago.", "This is the second time I contact you.",
    "I need it for work.", "It was a gift.",
]

# What can go missing, per device; the first is what a photo of the device can show missing.
PARTS = {
    "phone": ["the back cover", "the charger", "the SIM tray"],
    "tablet": ["the back cover", "the stylus", "the charger"],
    "laptop": ["several keys", "the charger", "the rubber feet"],
    "headphones": ["one ear cushion", "the cable", "the carrying case"],
    "watch": ["one strap", "the charging puck"],
}

MISSPELLINGS = {
    "screen": "screan", "battery": "batery", "charging": "chargin", "doesn't": "doesnt", "won't": "wont",
    "can't": "cant", "please": "pls", "you": "u", "the": "teh", "working": "workin", "because": "becuase",
    "cracked": "craked", "really": "realy", "update": "updte", "keyboard": "keybord",
}


def fill(template: str, rng: random.Random, device: str, model: str, part: str | None = None) -> str:
    text = template.format(
        part=part or rng.choice(PARTS[device]),
        dev=rng.choice(DEVICE_WORDS[device]),
        when=rng.choice(WHEN),
        model=model,
        months=rng.randint(2, 30),
        order=rng.randint(10000, 99999),
    )
    return text[:1].upper() + text[1:] if template.startswith("{part}") else text


def body(core: list[str], rng: random.Random, device: str, model: str) -> str:
    """Opener, the core sentences, an aside and a closer, joined like people write."""
    parts = [rng.choice(OPENERS), *core, fill(rng.choice(ASIDES), rng, device, model), rng.choice(CLOSERS)]
    text = " ".join(part for part in parts if part)
    return fill(text, rng, device, model) if "{" in text else text


def typos(text: str, rng: random.Random, rate: float) -> str:
    """Misspell some words, sometimes drop case and punctuation, like hurried customers do."""
    words = text.split(" ")
    for index, word in enumerate(words):
        if rng.random() >= rate:
            continue
        bare = word.lower().strip(".,!?")
        if bare in MISSPELLINGS:
            words[index] = word.lower().replace(bare, MISSPELLINGS[bare])
        elif len(word) > 4:
            words[index] = _keyboard_slip(word, rng)
    text = " ".join(words)
    if rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.3:
        text = text.replace(".", "").replace(",", "")
    return text


def _keyboard_slip(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 2)
    kind = rng.choice(["swap", "drop", "double"])
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]
