"""The Broad Sound Taxonomy (BST) as data: 5 top levels, 23 second-level target classes.

The code <-> index mapping is fixed by the order of ``CLASSES`` below (the order of the
taxonomy table in docs/task.md §2) and never changes: index ``i`` in every prior, logit,
pseudo-label or probability matrix of this project means ``CLASSES[i]``.

Labels that are not targets are recognised and counted, never fatal:
  * top-level-only labels (``"fx"``, or a ``class_idx`` ending in ``00``),
  * ``<top>-other`` labels (``"fx-other"``, or a ``class_idx`` ending in ``99``).
A value that is none of these is an unknown class and raises :class:`UnknownClassError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

TOP_LEVELS: tuple[str, ...] = ("m", "is", "sp", "fx", "ss")
TOP_LEVEL_NAMES: dict[str, str] = {
    "m": "Music",
    "is": "Instrument samples",
    "sp": "Speech",
    "fx": "Sound effects",
    "ss": "Soundscapes",
}

#: (code, name) of the 23 target classes, in index order.
_CLASS_TABLE: tuple[tuple[str, str], ...] = (
    ("m-sp", "solo percussion"),
    ("m-si", "solo instrument"),
    ("m-m", "multiple instruments"),
    ("is-p", "percussion"),
    ("is-s", "string"),
    ("is-w", "wind"),
    ("is-k", "piano / keyboard"),
    ("is-e", "synths / electronic"),
    ("sp-s", "solo speech"),
    ("sp-c", "conversation / crowd"),
    ("sp-p", "processed / synthetic speech"),
    ("fx-o", "objects / house appliances"),
    ("fx-v", "vehicles"),
    ("fx-m", "other mechanisms, engines, machines"),
    ("fx-h", "human sounds and actions"),
    ("fx-a", "animals"),
    ("fx-n", "natural elements and explosions"),
    ("fx-ex", "experimental"),
    ("fx-el", "electronic / design"),
    ("ss-n", "nature"),
    ("ss-i", "indoors"),
    ("ss-u", "urban"),
    ("ss-s", "synthetic / artificial"),
)

CLASSES: tuple[str, ...] = tuple(code for code, _ in _CLASS_TABLE)
CLASS_NAMES: dict[str, str] = dict(_CLASS_TABLE)
NUM_CLASSES: int = len(CLASSES)
CLASS_INDEX: dict[str, int] = {code: i for i, code in enumerate(CLASSES)}


def top_of(code: str) -> str:
    """Top level of a class code: the prefix before the first '-'."""
    return code.split("-", 1)[0]


#: (23,) int array: index of each class's top level in ``TOP_LEVELS``.
CLASS_TOP_INDEX: np.ndarray = np.array([TOP_LEVELS.index(top_of(c)) for c in CLASSES], dtype=np.int64)
#: top digit of the numeric ``class_idx`` for each top level (m=1 ... ss=5).
TOP_DIGIT: dict[str, int] = {top: i + 1 for i, top in enumerate(TOP_LEVELS)}


class LabelKind(enum.Enum):
    TARGET = "target"
    TOP_ONLY = "top-level-only"
    OTHER = "other"
    MISSING = "missing"


class UnknownClassError(ValueError):
    """A label that is neither a target, a top-level-only nor an ``-other`` label."""


@dataclass(frozen=True)
class ParsedLabel:
    kind: LabelKind
    index: int | None  # class index for TARGET, else None
    top: str | None  # top-level code when known


def code_to_index(code: str) -> int:
    """Index of a second-level code; raises UnknownClassError for anything else."""
    try:
        return CLASS_INDEX[code.strip().lower()]
    except KeyError:
        raise UnknownClassError(f"unknown BST class code {code!r}") from None


def index_to_code(index: int) -> str:
    return CLASSES[int(index)]


def parse_label(code: str | None, class_idx: str | int | None = None, *, where: str = "") -> ParsedLabel:
    """Classify one label from a metadata row.

    ``code`` is the ``class`` column (e.g. ``"fx-a"``, ``"fx-other"``, ``"fx"``);
    ``class_idx`` the numeric column, used only to recognise ``…00`` / ``…99`` when the
    code is empty. ``where`` (e.g. ``"BSD10k_metadata.csv row 17"``) is put in errors.
    """
    raw = "" if code is None else str(code).strip().lower()
    idx = "" if class_idx is None else str(class_idx).strip()
    if idx.endswith(".0"):
        idx = idx[:-2]
    if raw:
        if raw in CLASS_INDEX:
            return ParsedLabel(LabelKind.TARGET, CLASS_INDEX[raw], top_of(raw))
        if raw in TOP_LEVELS:
            return ParsedLabel(LabelKind.TOP_ONLY, None, raw)
        if raw.endswith("-other") and top_of(raw) in TOP_LEVELS:
            return ParsedLabel(LabelKind.OTHER, None, top_of(raw))
        prefix = f"{where}: " if where else ""
        raise UnknownClassError(f"{prefix}unknown class {code!r} (class_idx={class_idx!r})")
    if idx:
        if len(idx) == 3 and idx.isdigit() and 1 <= int(idx[0]) <= len(TOP_LEVELS):
            top = TOP_LEVELS[int(idx[0]) - 1]
            if idx.endswith("00"):
                return ParsedLabel(LabelKind.TOP_ONLY, None, top)
            if idx.endswith("99"):
                return ParsedLabel(LabelKind.OTHER, None, top)
        prefix = f"{where}: " if where else ""
        raise UnknownClassError(f"{prefix}empty class with class_idx {class_idx!r} that names no class")
    return ParsedLabel(LabelKind.MISSING, None, None)


def credit_matrix(same_top_credit: float = 0.375) -> np.ndarray:
    """(23, 23) credit[pred, truth]: 1 on the diagonal, ``same_top_credit`` within a top level, else 0."""
    same_top = CLASS_TOP_INDEX[:, None] == CLASS_TOP_INDEX[None, :]
    credit = np.where(same_top, same_top_credit, 0.0)
    np.fill_diagonal(credit, 1.0)
    return credit
