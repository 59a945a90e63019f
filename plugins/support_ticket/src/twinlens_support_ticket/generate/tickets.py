"""Ticket wording for generated tickets: specific and vague, with typos and asides.

Specific wording names the fault in one of many ways; vague wording ("it stopped working",
"see photo") says nothing about it, which is what makes the photo necessary. Cue sentences
carry what the severity depends on: the device being unusable, a minor glitch, or a
burn/smoke hazard.
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

SPECIFIC = {
    "cracked_screen": [
        "I dropped my {dev} and now the screen is cracked all over.",
        "The display glass shattered when it fell off the table {when}.",
        "There is a big crack across the screen, spiderweb pattern from the corner.",
        "screen cracked after a drop, glass is splintered",
        "My {dev} slipped out of my hand and the screen broke.",
        "The front glass has cracks running across it since {when}.",
        "Cracked display. It fell face down on the pavement.",
        "the screen got smashed, lines everywhere on the glass",
        "The touchscreen glass is broken, there are cracks spreading from where it hit the floor.",
    ],
    "water_damage": [
        "I dropped my {dev} in the sink {when} and now it acts strange.",
        "Spilled coffee all over it {when}.",
        "It got soaked in the rain on my way home.",
        "my kid dropped it in the bath, there is water inside the screen",
        "Fell into the pool {when}. I dried it with rice but no luck.",
        "Someone knocked a glass of water over it on my desk.",
        "There is moisture / fog under the glass after I went swimming with it.",
        "liquid damage: tea spilled on the {dev} and there are stains now",
        "It says liquid detected and there are water marks inside.",
    ],
    "swollen_battery": [
        "The back of my {dev} is bulging out, it doesn't sit flat anymore.",
        "The battery seems swollen, the screen is lifting away from the frame.",
        "case is puffy and pushed apart, it rocks when I put it on the table",
        "The {dev} has swollen up, there's a gap between the screen and the body.",
        "The battery is bulging and the case is bending outward.",
        "the screen is popping off because something inside is swelling",
        "My {dev} got thicker, the back cover is bowed and cracked open from inside.",
        "Looks like the battery expanded, the case is pushed up from inside.",
    ],
    "broken_port": [
        "The charging port is loose and the cable falls out.",
        "USB-C port is bent, the charger doesn't fit anymore.",
        "I have to wiggle the cable in the charging socket to get it to charge.",
        "the port broke, the pins inside are bent",
        "Charger won't stay in the port, it's damaged.",
        "The charging connector socket is broken, it only charges at a certain angle.",
        "Something broke inside the charging port when I pulled the cable out {when}.",
        "port is wobbly and the cable won't click in",
    ],
    "cosmetic_damage": [
        "There are scratches all over the back of my {dev}.",
        "It works fine, it just has a few scuffs and a small dent on the corner.",
        "the paint is wearing off and the case is scratched",
        "Cosmetic issue only: scratches on the case, everything still works.",
        "My {dev} arrived with scratches and a scuffed corner.",
        "A small dent and some scratches appeared on the housing, no functional problem.",
        "The finish is scratched up after only {months} months of normal use.",
        "lots of fine scratches on the body, looks used, works ok",
    ],
    "missing_part": [
        "My {dev} came without {part}.",
        "{part} fell off and I can't find it anywhere.",
        "The package did not include {part}.",
        "Missing: {part}.",
        "missing part - {part} not in the box",
        "After {months} months {part} came off and got lost.",
        "I'm missing {part} since {when}.",
        "{part} is gone, there is just the empty spot left",
    ],
    "software_error": [
        "An error message pops up every time I open the app.",
        "The {dev} keeps crashing after the latest update.",
        "It's stuck on the boot logo since the update {when}.",
        "The app freezes and then I get an error code on the screen.",
        "Software update failed and now it shows an error.",
        "keeps restarting by itself with a system error",
        "I get a blue crash screen with a stop code.",
        "the settings app crashes, says something went wrong, error code on screen",
        "Firmware update did not install, it says update failed.",
    ],
    "no_visible_fault": [
        "How do I turn on the battery saver on my {dev}?",
        "Everything looks fine, I just want to check if my warranty is still valid.",
        "It was acting weird earlier but now it seems ok. Is there anything I should do?",
        "Question about pairing my {dev} with bluetooth.",
        "Is it normal that it gets a bit warm while charging? No other problem.",
        "I can't find the setting to change the language.",
        "My son says it's broken but I can't see anything wrong with it.",
        "Not sure anything is wrong, it just feels slower than before.",
    ],
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

SUBJECT_SPECIFIC = {
    "cracked_screen": ["Cracked screen", "screen broken", "Display shattered after drop", "broken glass"],
    "water_damage": ["Water damage", "dropped in water", "liquid spill", "wet {dev}"],
    "swollen_battery": ["Battery swollen", "{dev} bulging", "case pushed apart", "swelling battery"],
    "broken_port": ["Charging port broken", "port damaged", "cable won't stay in", "charger port loose"],
    "cosmetic_damage": ["Scratches on case", "cosmetic damage", "dent and scratches", "scuffed {dev}"],
    "missing_part": ["Missing part", "{part} missing", "missing {part}", "part missing"],
    "software_error": ["Error message", "app crashing", "update failed", "error code on screen"],
    "no_visible_fault": ["Question", "general question", "warranty check", "how do I..."],
}
SUBJECT_VAGUE = ["Help", "Problem", "Issue with my {dev}", "broken", "Support request", "RE: my order", "urgent", "{model}"]

UNUSABLE = {
    "cracked_screen": ["The touch screen doesn't respond anymore.", "I can't see anything on it, can't use it at all."],
    "broken_port": ["It won't charge at all now, the battery is dead.", "Can't charge it anymore so it's useless."],
    "software_error": ["It won't boot at all.", "I can't get past the error, can't use it at all."],
    "missing_part": ["I can't use it without it.", "Useless without the missing part."],
}
MINOR = {
    "cracked_screen": ["It's just a small crack in the corner, it still works fine."],
    "broken_port": ["It still charges if I hold the cable, just annoying."],
    "software_error": ["It's only a small glitch, not a big deal."],
    "missing_part": ["Not urgent, I can manage without it for now."],
}
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
