"""Text preparation shared by the audio–text backbones."""

from __future__ import annotations


def split_and_join(text: str) -> str:
    """Split on ``,`` and ``;``, strip the parts, drop empty ones, rejoin with single spaces.

    The CP-JKU reference runs prepared every summary this way before the CLAP text towers.
    """
    return " ".join(part.strip() for part in text.replace(";", ",").split(",") if part.strip())


__all__ = ["split_and_join"]
