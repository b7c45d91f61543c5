"""Shared test fixtures: tiny datasets in the real on-disk layout (writers in ``testkit.bsd_dataset``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from testkit.bsd_dataset import balanced_rows, labelled_row, write_dataset


@pytest.fixture
def row() -> Callable[..., dict[str, str]]:
    """``row(sound_id, code, class_idx="", **fields)`` -> one labelled metadata row."""
    return labelled_row


@pytest.fixture
def balanced() -> Callable[..., list[dict[str, str]]]:
    """``balanced(n_per_class, classes=None, start=1000)`` -> target rows, n per class."""
    return balanced_rows


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """``make_dataset(rows, sub="d", **kw)`` -> dataset root under tmp_path (see ``write_dataset``)."""

    def make(rows: Sequence[dict[str, str]], sub: str = "d", **kw) -> Path:
        return write_dataset(tmp_path / sub, rows, **kw)

    return make
