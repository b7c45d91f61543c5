"""Freesound-like metadata for the demo dataset: titles, tags and descriptions.

Each clip's metadata is drawn in one of three modes, independently of its audio:
``informative`` (synonyms and examples of its class, never the class code or name),
``generic`` (says nothing about the content: "recording 12", "field rec", device notes,
licence boilerplate) or ``misleading`` (keywords of another class). Some clips are
written in Spanish, German or French; descriptions carry HTML, links and ``&amp;``.

Also holds the class descriptions written to ``BST_description.csv``.
"""

from __future__ import annotations

import numpy as np

Rng = np.random.Generator

# ---------------------------------------------------------------------------- class vocabularies
#: English keywords per class: synonyms and examples. Never a class code or class name.
VOCAB_EN: dict[str, tuple[str, ...]] = {
    "m-sp": (
        "drum loop",
        "drum groove",
        "breakbeat",
        "drum solo",
        "drumming",
        "snare roll",
        "tabla",
        "djembe",
        "cajon",
        "bongos",
        "conga",
        "hand drums",
        "drum kit",
        "shaker groove",
        "rhythm",
        "beat",
    ),
    "m-si": (
        "guitar solo",
        "melody",
        "improvisation",
        "violin melody",
        "flute tune",
        "piano piece",
        "singing",
        "a cappella",
        "humming",
        "cello solo",
        "solo guitar",
        "tune",
        "ballad",
        "sung",
        "fingerpicking",
    ),
    "m-m": (
        "band",
        "ensemble",
        "orchestra",
        "jam session",
        "full mix",
        "track",
        "jazz trio",
        "rock song",
        "quartet",
        "chord progression",
        "backing track",
        "live gig",
        "song",
        "arrangement",
        "bass and drums",
    ),
    "is-p": (
        "one shot",
        "snare hit",
        "kick drum",
        "cymbal crash",
        "tom",
        "hi hat",
        "woodblock",
        "cowbell",
        "rimshot",
        "timpani hit",
        "single hit",
        "clap sample",
        "triangle",
        "tambourine hit",
    ),
    "is-s": (
        "guitar pluck",
        "violin note",
        "cello note",
        "bass guitar",
        "harp",
        "pizzicato",
        "open e note",
        "bowed note",
        "ukulele",
        "banjo",
        "mandolin",
        "fret",
        "plucked",
    ),
    "is-w": (
        "flute note",
        "clarinet",
        "saxophone",
        "trumpet",
        "trombone",
        "oboe",
        "french horn",
        "recorder",
        "bassoon",
        "didgeridoo",
        "tuba",
        "brass",
        "blown note",
    ),
    "is-k": (
        "piano note",
        "grand piano",
        "upright piano",
        "organ",
        "harpsichord",
        "rhodes",
        "celesta",
        "key press",
        "felt piano",
        "piano chord",
        "accordion",
        "clavinet",
    ),
    "is-e": (
        "synth",
        "synthesizer",
        "analog",
        "saw lead",
        "bass synth",
        "pad",
        "oscillator",
        "moog",
        "808",
        "arpeggiator",
        "modular",
        "square wave",
        "chiptune",
        "wavetable",
    ),
    "sp-s": (
        "voice",
        "man talking",
        "woman talking",
        "narration",
        "spoken word",
        "reading aloud",
        "monologue",
        "voice over",
        "poem",
        "male voice",
        "female voice",
        "talking",
        "announcement",
        "storytelling",
    ),
    "sp-c": (
        "chatter",
        "people talking",
        "babble",
        "dialogue",
        "discussion",
        "audience",
        "walla",
        "party",
        "cafe voices",
        "kids playing",
        "argument",
        "group talking",
        "interview",
        "many voices",
    ),
    "sp-p": (
        "robot voice",
        "radio voice",
        "telephone",
        "vocoder",
        "voice synthesis",
        "tts",
        "walkie talkie",
        "distorted voice",
        "megaphone",
        "glitched voice",
        "computer voice",
        "pitch shifted voice",
    ),
    "fx-o": (
        "door",
        "keys",
        "cup",
        "drawer",
        "dishes",
        "glass clink",
        "chair creak",
        "zipper",
        "paper rustle",
        "microwave",
        "vacuum cleaner",
        "coin",
        "scissors",
        "bottle",
        "cutlery",
        "light switch",
    ),
    "fx-v": (
        "car",
        "truck",
        "motorbike",
        "train",
        "airplane",
        "bus",
        "car pass by",
        "tram",
        "helicopter",
        "car horn",
        "tractor",
        "boat",
        "scooter",
    ),
    "fx-m": (
        "motor",
        "gears",
        "clockwork",
        "drill",
        "fan",
        "printer",
        "elevator",
        "compressor",
        "pump",
        "ratchet",
        "conveyor",
        "factory",
        "lathe",
        "servo",
        "mechanism",
    ),
    "fx-h": (
        "footsteps",
        "clapping",
        "breathing",
        "cough",
        "sneeze",
        "laugh",
        "snoring",
        "eating",
        "kiss",
        "heartbeat",
        "hands rubbing",
        "finger snap",
        "scream",
        "yawn",
        "walking",
    ),
    "fx-a": (
        "dog",
        "bark",
        "cat meow",
        "birdsong",
        "bird",
        "cow",
        "horse",
        "frog",
        "insects",
        "crickets",
        "owl",
        "rooster",
        "sheep",
        "growl",
        "chirping",
        "duck quack",
    ),
    "fx-n": (
        "rain",
        "thunder",
        "explosion",
        "gust",
        "storm",
        "fire crackling",
        "water splash",
        "waves",
        "stream",
        "fireworks",
        "rumble",
        "hail",
        "waterfall",
        "drops",
        "blast",
    ),
    "fx-ex": (
        "glitch",
        "granular",
        "weird",
        "abstract",
        "mangled",
        "reversed",
        "noise art",
        "circuit bent",
        "bizarre",
        "heavily processed",
        "spectral freeze",
        "stretched",
        "warped",
    ),
    "fx-el": (
        "whoosh",
        "laser",
        "sci-fi",
        "ui click",
        "beep",
        "notification",
        "power up",
        "zap",
        "cartoon boing",
        "alarm beep",
        "game sound",
        "interface",
        "transition",
        "swoosh",
        "8-bit coin",
    ),
    "ss-n": (
        "forest",
        "birds in the forest",
        "countryside",
        "meadow",
        "park",
        "jungle",
        "beach",
        "dawn chorus",
        "outdoor ambience",
        "river ambience",
        "night crickets",
        "mountain",
        "woods",
    ),
    "ss-i": (
        "room tone",
        "kitchen ambience",
        "office",
        "restaurant",
        "cafe",
        "living room",
        "inside the house",
        "hallway",
        "shop interior",
        "library",
        "airport lounge",
        "station hall",
        "classroom",
    ),
    "ss-u": (
        "city",
        "street",
        "traffic",
        "downtown",
        "city ambience",
        "market",
        "construction site",
        "sidewalk",
        "busy road",
        "plaza",
        "harbour",
        "night city",
        "town square",
    ),
    "ss-s": (
        "drone",
        "dark ambient",
        "atmosphere",
        "pad texture",
        "space ambience",
        "sci-fi atmosphere",
        "evolving texture",
        "alien world",
        "generative",
        "drone pad",
        "cinematic background",
        "spaceship hum",
    ),
}

#: Keywords in other languages: (language, phrase).
VOCAB_FOREIGN: dict[str, tuple[tuple[str, str], ...]] = {
    "m-sp": (
        ("es", "ritmo de batería"),
        ("es", "tambores"),
        ("de", "Schlagzeug"),
        ("de", "Trommelrhythmus"),
        ("fr", "boucle de batterie"),
        ("fr", "rythme"),
    ),
    "m-si": (
        ("es", "melodía"),
        ("es", "guitarra sola"),
        ("de", "Melodie"),
        ("de", "Gesang"),
        ("fr", "mélodie"),
        ("fr", "chant"),
    ),
    "m-m": (
        ("es", "banda"),
        ("es", "orquesta"),
        ("de", "Orchester"),
        ("de", "Zusammenspiel"),
        ("fr", "orchestre"),
        ("fr", "morceau complet"),
    ),
    "is-p": (
        ("es", "golpe de caja"),
        ("es", "platillo"),
        ("de", "Becken"),
        ("de", "Einzelschlag"),
        ("fr", "coup de caisse claire"),
        ("fr", "cymbale"),
    ),
    "is-s": (
        ("es", "nota de guitarra"),
        ("es", "violín"),
        ("de", "Gitarrenton"),
        ("de", "Geige"),
        ("fr", "note de guitare"),
        ("fr", "violon"),
    ),
    "is-w": (
        ("es", "flauta"),
        ("es", "trompeta"),
        ("de", "Flöte"),
        ("de", "Trompete"),
        ("fr", "flûte"),
        ("fr", "trompette"),
    ),
    "is-k": (
        ("es", "nota de piano"),
        ("es", "órgano"),
        ("de", "Klavier"),
        ("de", "Orgel"),
        ("fr", "note de piano"),
        ("fr", "orgue"),
    ),
    "is-e": (
        ("es", "sintetizador"),
        ("es", "bajo sintetizado"),
        ("de", "Analogsynth"),
        ("de", "Synthesizer-Ton"),
        ("fr", "synthétiseur"),
        ("fr", "nappe de synthé"),
    ),
    "sp-s": (
        ("es", "voz"),
        ("es", "hombre hablando"),
        ("de", "Stimme"),
        ("de", "Sprecher"),
        ("fr", "voix"),
        ("fr", "femme qui parle"),
    ),
    "sp-c": (
        ("es", "gente hablando"),
        ("es", "multitud"),
        ("de", "Menschenmenge"),
        ("de", "Stimmengewirr"),
        ("fr", "foule"),
        ("fr", "brouhaha"),
    ),
    "sp-p": (
        ("es", "voz robótica"),
        ("es", "voz de radio"),
        ("de", "Roboterstimme"),
        ("de", "Funkspruch"),
        ("fr", "voix robotique"),
        ("fr", "voix au téléphone"),
    ),
    "fx-o": (
        ("es", "puerta"),
        ("es", "llaves"),
        ("de", "Tür"),
        ("de", "Schlüssel"),
        ("fr", "porte"),
        ("fr", "vaisselle"),
    ),
    "fx-v": (
        ("es", "coche"),
        ("es", "tren"),
        ("de", "Auto"),
        ("de", "Zug"),
        ("fr", "voiture"),
        ("fr", "moto"),
    ),
    "fx-m": (
        ("es", "motor eléctrico"),
        ("es", "taladro"),
        ("de", "Bohrmaschine"),
        ("de", "Zahnräder"),
        ("fr", "moteur"),
        ("fr", "perceuse"),
    ),
    "fx-h": (
        ("es", "pasos"),
        ("es", "aplausos"),
        ("de", "Schritte"),
        ("de", "Husten"),
        ("fr", "pas"),
        ("fr", "respiration"),
    ),
    "fx-a": (
        ("es", "perro ladrando"),
        ("es", "pájaro"),
        ("de", "Hund bellt"),
        ("de", "Vogel"),
        ("fr", "chien qui aboie"),
        ("fr", "oiseau"),
    ),
    "fx-n": (
        ("es", "lluvia"),
        ("es", "trueno"),
        ("de", "Regen"),
        ("de", "Donner"),
        ("fr", "pluie"),
        ("fr", "orage"),
    ),
    "fx-ex": (
        ("es", "sonido extraño"),
        ("es", "textura granular"),
        ("de", "seltsam"),
        ("de", "verfremdet"),
        ("fr", "bizarre"),
        ("fr", "texture granulaire"),
    ),
    "fx-el": (
        ("es", "pitido"),
        ("es", "sonido de láser"),
        ("de", "Piepton"),
        ("de", "Laserschuss"),
        ("fr", "bip"),
        ("fr", "son de laser"),
    ),
    "ss-n": (
        ("es", "bosque"),
        ("es", "playa"),
        ("de", "Wald"),
        ("de", "Wiese"),
        ("fr", "forêt"),
        ("fr", "plage"),
    ),
    "ss-i": (
        ("es", "ambiente de oficina"),
        ("es", "cocina"),
        ("de", "Raumklang"),
        ("de", "Büro"),
        ("fr", "ambiance de bureau"),
        ("fr", "cuisine"),
    ),
    "ss-u": (
        ("es", "ciudad"),
        ("es", "tráfico"),
        ("de", "Stadt"),
        ("de", "Verkehr"),
        ("fr", "ville"),
        ("fr", "circulation"),
    ),
    "ss-s": (
        ("es", "ambiente oscuro"),
        ("es", "paisaje sonoro"),
        ("de", "Klangteppich"),
        ("de", "düstere Atmosphäre"),
        ("fr", "nappe sonore"),
        ("fr", "ambiance spatiale"),
    ),
}

# ---------------------------------------------------------------------------- generic material
GENERIC_TITLES = (
    "recording {n}",
    "field rec",
    "sample {n}",
    "untitled",
    "new sound {n}",
    "audio {date}",
    "take {n}",
    "test",
    "sound {n}",
    "REC_{nnnn}",
    "ZOOM{nnnn}",
    "clip_{n}",
    "my recording",
    "misc {n}",
    "{date} session",
    "snd_{nnnn}",
    "WS_{nnnn}",
    "track {n}",
)
GENERIC_TAGS = (
    "recording",
    "sound",
    "sample",
    "zoom",
    "h4n",
    "wav",
    "mono",
    "field-recording",
    "44khz",
    "loop",
    "free",
    "misc",
    "audio",
    "tascam",
    "raw",
    "edit",
    "demo",
    "cc0",
    "original",
    "short",
    "long",
    "stereo-to-mono",
    "24bit",
    "handheld",
    "zoom-h6",
    "sony-pcm",
)
ADJECTIVES = (
    "short",
    "long",
    "close",
    "distant",
    "loud",
    "soft",
    "quick",
    "slow",
    "heavy",
    "light",
    "dry",
    "wet",
    "low",
    "high",
    "clean",
    "dirty",
    "small",
    "big",
)
DEVICES = (
    "Zoom H4n",
    "Zoom H6",
    "Tascam DR-40",
    "Sony PCM-M10",
    "a phone",
    "an old tape recorder",
    "two Rode NT5",
    "a Marantz PMD661",
    "a cheap USB mic",
)
PLACES = (
    "at home",
    "in the studio",
    "last summer",
    "on holiday",
    "with a friend",
    "late at night",
    "yesterday",
    "in 2019",
    "during a workshop",
    "for a school project",
)
LICENCES = (
    "This work is licensed under the Creative Commons Attribution 4.0 License.",
    "This work is licensed under CC BY 4.0 &#8211; please credit me if you use it.",
    "Released under CC0 (public domain), no attribution needed.",
    "Licensed under the Creative Commons Attribution-NonCommercial 4.0 License.",
)
GENERIC_SENTENCES_EN = (
    "Recorded with {device} {place}.",
    "Free to use :)",
    "Please credit if you use it.",
    "Edited in Audacity &amp; normalized.",
    "Processed in Reaper, nothing fancy.",
    "Sample rate 44.1 kHz, 16 bit.",
    "Part of my sound collection.",
    "Another one from my archive.",
    "Not much to say about this one.",
    'Check out my other sounds <a href="https://freesound.org/people/{user}/">here</a>.',
    "<b>Recorded</b> {place}.",
    'More at <a href="https://{user}.example.org">my website</a>.',
    "Feel free to leave a comment!",
    "Raw file, no EQ &amp; no compression.",
)
GENERIC_SENTENCES_FOREIGN = {
    "es": ("Grabado con {device}.", "Libre para usar.", "Por favor, dar crédito si lo usas."),
    "de": ("Aufgenommen mit {device}.", "Frei verwendbar.", "Bitte Namensnennung bei Verwendung."),
    "fr": ("Enregistré avec {device}.", "Libre d'utilisation.", "Merci de me créditer si vous l'utilisez."),
}
INFO_SENTENCES_EN = (
    "{Kw} recorded {place}.",
    "A {adj} {kw}.",
    "Sound of a {kw}, {kw2} in the background.",
    "<b>{Kw}</b>, {kw2} and some {kw3}.",
    "Just {kw} &amp; {kw2}.",
    "{Kw}. {adj} take.",
    "Recorded {kw} with {device}.",
    "I like this {kw}!",
)
INFO_SENTENCES_FOREIGN = {
    "es": ("Sonido de {kw}.", "Grabación de {kw} {place_es}.", "{Kw} y {kw2}."),
    "de": ("Aufnahme: {kw}.", "{Kw}, aufgenommen {place_de}.", "{Kw} und {kw2}."),
    "fr": ("Son de {kw}.", "Enregistrement de {kw} {place_fr}.", "{Kw} et {kw2}."),
}
PLACES_FOREIGN = {
    "es": ("en casa", "el verano pasado"),
    "de": ("zu Hause", "letzten Sommer"),
    "fr": ("à la maison", "l'été dernier"),
}
TITLE_TEMPLATES = (
    "{Kw}",
    "{Kw} {n}",
    "{kw_}_{nn}",
    "{Kw} ({adj})",
    "{Kw} - take {n}",
    "{kw} and {kw2}",
    "{Adj} {kw}",
    "{kw_}_{adj}_{nn}.wav",
    "{Kw} {date}",
)

_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ren",
    "tos",
    "vik",
    "dra",
    "pel",
    "zu",
    "sam",
    "nor",
    "tek",
    "jo",
    "fil",
    "gor",
    "ia",
    "bex",
    "quin",
    "ula",
    "mos",
)

# ---------------------------------------------------------------------------- label-noise helpers
#: plausible cross-top confusions for label noise and misleading tags
CONFUSABLE: dict[str, tuple[str, ...]] = {
    "m-sp": ("is-p", "m-m"),
    "m-si": ("is-s", "is-w", "is-k", "m-m"),
    "m-m": ("m-si", "is-e", "ss-s"),
    "is-p": ("m-sp", "fx-o"),
    "is-s": ("m-si", "is-k"),
    "is-w": ("m-si", "is-e"),
    "is-k": ("m-si", "is-s"),
    "is-e": ("fx-el", "m-m", "ss-s"),
    "sp-s": ("sp-p", "fx-h"),
    "sp-c": ("ss-i", "ss-u", "sp-s"),
    "sp-p": ("fx-el", "sp-s"),
    "fx-o": ("fx-m", "fx-h", "ss-i"),
    "fx-v": ("ss-u", "fx-m"),
    "fx-m": ("fx-o", "fx-v", "ss-i"),
    "fx-h": ("sp-s", "fx-o"),
    "fx-a": ("ss-n", "fx-h"),
    "fx-n": ("ss-n", "fx-ex"),
    "fx-ex": ("fx-el", "ss-s", "is-e"),
    "fx-el": ("fx-ex", "is-e", "ss-s"),
    "ss-n": ("fx-n", "fx-a"),
    "ss-i": ("sp-c", "fx-o"),
    "ss-u": ("fx-v", "sp-c"),
    "ss-s": ("fx-ex", "m-m", "ss-n"),
}


def plausible_wrong(
    rng: Rng, code: str, classes: tuple[str, ...], p_sibling: float = 0.55, p_confusable: float = 0.4
) -> str:
    """A wrong class for ``code``: mostly a sibling, else a confusable class, rarely any class."""
    top = code.split("-")[0]
    u = rng.random()
    if u < p_sibling:
        pool = [c for c in classes if c.split("-")[0] == top and c != code]
    elif u < p_sibling + p_confusable:
        pool = list(CONFUSABLE[code])
    else:
        pool = [c for c in classes if c != code]
    return pool[int(rng.integers(len(pool)))]


# ---------------------------------------------------------------------------- writers
def uploader_names(rng: Rng, k: int) -> list[str]:
    """``k`` distinct made-up Freesound user names."""
    names: list[str] = []
    while len(names) < k:
        parts = rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))
        name = "".join(parts)
        style = rng.integers(4)
        if style == 1:
            name = name.capitalize()
        elif style == 2:
            name += str(int(rng.integers(1, 999)))
        elif style == 3:
            name = name + "_" + str(rng.choice(("audio", "sfx", "rec", "sounds", "fs")))
        if name not in names:
            names.append(name)
    return names


def _choice(rng: Rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _fill(rng: Rng, template: str, kws: list[str], user: str, lang: str = "en") -> str:
    kw = kws[0] if kws else "sound"
    kw2 = kws[1 % len(kws)] if kws else "noise"
    kw3 = kws[2] if len(kws) > 2 else "background noise"
    n = int(rng.integers(1, 40))
    date = f"20{int(rng.integers(10, 25)):02d}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
    adj = _choice(rng, ADJECTIVES)
    values = {
        "kw": kw,
        "Kw": kw[:1].upper() + kw[1:],
        "kw2": kw2,
        "kw3": kw3,
        "kw_": kw.replace(" ", "_"),
        "n": n,
        "nn": f"{n:02d}",
        "nnnn": f"{int(rng.integers(1, 9999)):04d}",
        "date": date,
        "adj": adj,
        "Adj": adj.capitalize(),
        "device": _choice(rng, DEVICES),
        "place": _choice(rng, PLACES),
        "user": user,
        "place_es": _choice(rng, PLACES_FOREIGN["es"]),
        "place_de": _choice(rng, PLACES_FOREIGN["de"]),
        "place_fr": _choice(rng, PLACES_FOREIGN["fr"]),
    }
    return template.format(**values)


def _tag(s: str) -> str:
    return s.lower().replace(" ", "-")


def _keywords(rng: Rng, code: str, lang: str, k: int) -> list[str]:
    if lang == "en":
        pool = list(VOCAB_EN[code])
    else:
        pool = [p for lg, p in VOCAB_FOREIGN[code] if lg == lang] + list(VOCAB_EN[code][:3])
    idx = rng.permutation(len(pool))[: min(k, len(pool))]
    return [pool[i] for i in idx]


def _generic_description(rng: Rng, user: str, lang: str) -> list[str]:
    parts = []
    for _ in range(int(rng.integers(1, 3))):
        if lang != "en" and rng.random() < 0.7:
            parts.append(_fill(rng, _choice(rng, GENERIC_SENTENCES_FOREIGN[lang]), [], user, lang))
        else:
            parts.append(_fill(rng, _choice(rng, GENERIC_SENTENCES_EN), [], user))
    if rng.random() < 0.3:
        parts.append(_choice(rng, LICENCES))
    return parts


def make_metadata(
    rng: Rng, code: str, mode: str, lang: str, user: str, wrong: str | None = None
) -> tuple[str, str, str]:
    """(title, tags, description) for a clip of class ``code``.

    ``mode``: ``informative`` (keywords of ``code``), ``generic`` (nothing about the content) or
    ``misleading`` (keywords of ``wrong``). ``lang``: en, es, de or fr.
    """
    if mode not in ("informative", "generic", "misleading"):
        raise ValueError(f"unknown metadata mode {mode!r}")
    src = code if mode == "informative" else wrong
    if mode == "misleading" and src is None:
        raise ValueError("misleading metadata needs a wrong class")
    kws = _keywords(rng, src, lang, int(rng.integers(2, 6))) if src else []
    # title
    if kws and rng.random() < (0.75 if mode == "informative" else 0.5):
        title = _fill(rng, _choice(rng, TITLE_TEMPLATES), kws, user, lang)
    else:
        title = _fill(rng, _choice(rng, GENERIC_TITLES), [], user)
        if mode == "generic" and rng.random() < 0.03:
            title = ""
    # tags: keywords (always >= 2 for informative/misleading) plus generic ones
    tags = [_tag(k) for k in kws]
    gen_idx = rng.permutation(len(GENERIC_TAGS))[: int(rng.integers(0 if kws else 1, 5))]
    tags += [GENERIC_TAGS[i] for i in gen_idx]
    tags = [tags[i] for i in rng.permutation(len(tags))]
    if mode == "generic" and rng.random() < 0.15:
        tags = []
    sep = ", " if rng.random() < 0.6 else ("," if rng.random() < 0.5 else " ")
    tag_str = sep.join(dict.fromkeys(tags))
    # description
    parts: list[str] = []
    if rng.random() > 0.3:
        if kws and rng.random() < 0.7:
            if lang == "en":
                parts.append(_fill(rng, _choice(rng, INFO_SENTENCES_EN), kws, user))
            else:
                parts.append(_fill(rng, _choice(rng, INFO_SENTENCES_FOREIGN[lang]), kws, user, lang))
        parts += _generic_description(rng, user, lang)
        if rng.random() < 0.15:
            parts.append(f"https://freesound.org/people/{user}/sounds/{int(rng.integers(1000, 800000))}/")
    joiner = "\n" if rng.random() < 0.2 else " "
    description = joiner.join(dict.fromkeys(parts))
    return title, tag_str, description


# ---------------------------------------------------------------------------- BST_description.csv
TOP_DESCRIPTIONS: dict[str, tuple[str, str, str]] = {  # top: (long name, description, examples)
    "m": (
        "Music",
        "Musical content: performances, loops and pieces of one or more instruments or voices.",
        "Songs, drum loops, melodies, orchestral excerpts",
    ),
    "is": (
        "Instrument samples",
        "Single, dry, short sounds of one musical instrument (one-shots and notes).",
        "A piano note, a snare hit, a plucked string, a synth stab",
    ),
    "sp": (
        "Speech",
        "Human speech: one or more people speaking, or processed/synthetic voices.",
        "Narration, conversations, radio voices, text-to-speech",
    ),
    "fx": (
        "Sound effects",
        "Isolated sound events of objects, machines, people, animals or nature.",
        "Door slams, car pass-bys, footsteps, dog barks, explosions, UI beeps",
    ),
    "ss": (
        "Soundscapes",
        "Recordings of an environment as a whole, with many overlapping sources.",
        "Forest ambience, office room tone, busy street, synthetic drones",
    ),
}
CLASS_DESCRIPTIONS: dict[str, tuple[str, str]] = {  # code: (description, examples)
    "m-sp": (
        "Music performed on percussion instruments only: rhythms, grooves and solos.",
        "Drum kit grooves, tabla solos, djembe rhythms, breakbeat loops",
    ),
    "m-si": (
        "Music performed by one melodic instrument or one singing voice.",
        "Guitar solos, violin melodies, a cappella singing, solo piano pieces",
    ),
    "m-m": (
        "Music with several instruments or voices playing together.",
        "Bands, orchestras, jazz trios, full song mixes, backing tracks",
    ),
    "is-p": (
        "Single hits of percussion instruments.",
        "Kick drum, snare, cymbal crash, cowbell, timpani hits",
    ),
    "is-s": (
        "Single notes or chords of string instruments, plucked or bowed.",
        "Guitar plucks, violin and cello notes, harp, pizzicato",
    ),
    "is-w": (
        "Single notes of wind and brass instruments.",
        "Flute, clarinet, saxophone, trumpet, tuba notes",
    ),
    "is-k": (
        "Single notes or chords of acoustic or electro-mechanical keyboards (not synthesised).",
        "Grand piano, organ, harpsichord, Rhodes notes",
    ),
    "is-e": (
        "Single notes or stabs of synthesisers and electronic instruments.",
        "Analog synth leads, bass synths, pads, 808 notes, chiptune blips",
    ),
    "sp-s": ("One person speaking.", "Narration, voice-over, reading a poem, an announcement"),
    "sp-c": (
        "Several people speaking: conversations, crowds, audiences.",
        "Dialogues, interviews, party chatter, crowd walla",
    ),
    "sp-p": (
        "Speech that is processed or synthetic.",
        "Radio and telephone voices, vocoder, robot voices, TTS",
    ),
    "fx-o": (
        "Sounds of everyday objects and house appliances.",
        "Doors, keys, dishes, zippers, vacuum cleaners",
    ),
    "fx-v": ("Sounds of vehicles.", "Cars passing by, trains, motorbikes, airplanes, car horns"),
    "fx-m": ("Other mechanisms, engines and machines.", "Motors, gears, clockwork, drills, fans, printers"),
    "fx-h": (
        "Non-speech sounds of humans and their actions.",
        "Footsteps, clapping, coughing, breathing, laughing",
    ),
    "fx-a": ("Sounds made by animals.", "Dog barks, cat meows, birdsong, frogs, insects"),
    "fx-n": ("Natural elements and explosions.", "Rain, thunder, gusts, fire, water splashes, explosions"),
    "fx-ex": (
        "Experimental, heavily processed sounds whose source is hard to tell.",
        "Glitches, granular textures, circuit bending, spectral freezes",
    ),
    "fx-el": (
        "Electronic and designed sounds: sci-fi, user interface, whooshes, cartoons.",
        "Whooshes, lasers, UI clicks, notification beeps, power-ups",
    ),
    "ss-n": ("Soundscapes of natural environments.", "Forest and meadow ambiences, beaches, dawn chorus"),
    "ss-i": ("Soundscapes of indoor spaces.", "Room tone, kitchens, offices, restaurants, station halls"),
    "ss-u": ("Soundscapes of urban environments.", "Streets, traffic, markets, construction sites"),
    "ss-s": (
        "Synthetic or artificial soundscapes.",
        "Drones, dark ambient, sci-fi atmospheres, generative textures",
    ),
}
