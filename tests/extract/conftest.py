"""Fixtures of the extraction tests: tiny audio datasets in the real BSD layout.

``write_audio_dataset(root, clips)`` writes ``audio/<id>.wav``, ``metadata/TINY_metadata.csv``
and the shipped ``features/clap_{audio,text}_embeddings/<id>.npy``; each clip is a dict with
``id`` and either ``seconds`` (a deterministic tone + noise, 44.1 kHz 16-bit unless ``rate`` /
``channels`` say otherwise) or ``bad`` = "empty" | "corrupt" | "nan" | "zero" | "missing".
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from testkit.bsd_dataset import labelled_row, write_metadata
from testkit.tiny_backbones import TINY_ROBERTA_VOCAB, write_tiny_tokenizer

CODES = ("fx-a", "m-si", "sp-s", "ss-u", "is-p", "fx-v")


def signal(clip_id: str, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """Deterministic (T, channels) float32 test audio: a clip-specific tone plus noise."""
    rng = np.random.default_rng(zlib.crc32(clip_id.encode()))
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    f0 = 200 + rng.integers(0, 2000)
    x = 0.3 * np.sin(2 * np.pi * f0 * t)[:, None] + 0.1 * rng.standard_normal((n, channels))
    return (x * np.linspace(1.0, 0.5, channels)[None, :]).astype(np.float32)


def write_audio_dataset(root: Path, clips: Sequence[dict[str, Any]], *, shipped: bool = True) -> Path:
    root = Path(root)
    for sub in ("audio", "metadata", "features/clap_audio_embeddings", "features/clap_text_embeddings"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for i, c in enumerate(clips):
        cid = str(c["id"])
        code = c.get("code", CODES[i % len(CODES)])
        desc = c.get("description", f"<b>Recorded</b> at place {i}. https://example.org/{i}")
        rows.append(
            labelled_row(
                cid,
                code,
                uploader="u",
                title=c.get("title", f"Clip {cid}"),
                tags=c.get("tags", f"tag{i},field-recording"),
                description=desc,
            )
        )
        path = root / "audio" / f"{cid}.wav"
        bad = c.get("bad")
        rate = int(c.get("rate", 44100))
        if bad == "empty":
            path.write_bytes(b"")
        elif bad == "corrupt":
            path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio" * 3)
        elif bad == "nan":
            x = signal(cid, 0.5, rate)
            x[100, 0] = np.nan
            sf.write(path, x, rate, subtype="FLOAT")
        elif bad == "zero":
            sf.write(path, np.zeros((0, 1), dtype=np.float32), rate, subtype="PCM_16")
        elif bad == "missing":
            pass
        else:
            sf.write(
                path,
                signal(cid, float(c["seconds"]), rate, int(c.get("channels", 1))),
                rate,
                subtype=c.get("subtype", "PCM_16"),
            )
        if shipped and c.get("shipped", True):
            rng = np.random.default_rng(zlib.crc32(cid.encode()) + 7)
            np.save(
                root / "features/clap_audio_embeddings" / f"{cid}.npy",
                rng.standard_normal(512).astype(np.float32),
            )
            np.save(
                root / "features/clap_text_embeddings" / f"{cid}.npy",
                rng.standard_normal(512).astype(np.float32),
            )
    write_metadata(root, rows, "TINY")
    return root


#: a small mixed dataset: short, long (3 windows at 10 s), stereo, 16 kHz and 48 kHz files, two bad ones
MIXED = [
    {"id": "101", "seconds": 1.2},
    {"id": "102", "seconds": 0.02},
    {"id": "103", "seconds": 21.0},
    {"id": "104", "seconds": 3.0, "channels": 2},
    {"id": "105", "bad": "corrupt"},
    {"id": "106", "seconds": 10.0, "rate": 16000},
    {"id": "107", "seconds": 2.5, "rate": 48000},
    {"id": "108", "bad": "empty"},
    {"id": "109", "seconds": 0.7},
    {"id": "110", "seconds": 5.0},
]


@pytest.fixture
def two_torch_threads():
    """Run a test with two torch threads (restored afterwards), the same on every machine
    whatever its core count."""
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def audio_dataset(tmp_path: Path):
    """``audio_dataset(clips=MIXED, sub="ds", shipped=True)`` -> dataset root under tmp_path."""

    def make(clips: Sequence[dict[str, Any]] = MIXED, sub: str = "ds", shipped: bool = True) -> Path:
        return write_audio_dataset(tmp_path / sub, clips, shipped=shipped)

    return make


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory) -> Path:
    """The MIXED dataset, written once per test module."""
    return write_audio_dataset(tmp_path_factory.mktemp("mixed") / "ds", MIXED)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A tiny byte-level BPE (vocab.json + merges.txt) in the RoBERTa file format, 300 tokens.

    No RoBERTa vocabulary exists offline: text towers are tested through the real
    ``from_pretrained(local_dir)`` path on this one.
    """
    folder = write_tiny_tokenizer(tmp_path_factory.mktemp("roberta_tok"))
    assert len(json.loads((folder / "vocab.json").read_text())) == TINY_ROBERTA_VOCAB
    return folder
