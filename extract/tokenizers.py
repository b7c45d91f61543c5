"""Local tokenizer folders for the text towers (RoBERTa byte-level BPE).

Nothing is fetched from the model hub: the folder must hold the tokenizer files the user
downloaded. ``from_pretrained`` on a folder without them (or on a hub name while offline)
silently returns a tokenizer with only the special tokens, so the vocabulary size is always
checked after loading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROBERTA_VOCAB_SIZE = 50265  # roberta-base and roberta-large share vocab.json / merges.txt
ROBERTA_FILES = ("vocab.json", "merges.txt")


class TokenizerError(RuntimeError):
    """A tokenizer folder is missing, incomplete, or yields the wrong vocabulary."""


def load_roberta_tokenizer(directory: str | Path | None, expected_vocab: int = ROBERTA_VOCAB_SIZE) -> Any:
    """Load a RoBERTa tokenizer from a local folder holding ``vocab.json`` and ``merges.txt``.

    Loads through ``transformers.RobertaTokenizer.from_pretrained(directory)`` with the hub
    switched off, then checks that ``len(tokenizer) == expected_vocab`` (50265 for the
    released roberta-base / roberta-large files). Raises :class:`TokenizerError` naming the
    folder and the missing file or the size found.
    """
    if directory is None:
        raise TokenizerError(
            "this backbone has a text tower and needs a local tokenizer folder (--tokenizer DIR) "
            f"holding {' + '.join(ROBERTA_FILES)} of roberta-base/roberta-large"
        )
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise TokenizerError(f"tokenizer folder not found: {directory}")
    missing = [name for name in ROBERTA_FILES if not (directory / name).is_file()]
    if missing:
        raise TokenizerError(
            f"tokenizer folder {directory} lacks {', '.join(missing)} "
            f"(needs {' + '.join(ROBERTA_FILES)} of roberta-base/roberta-large)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import RobertaTokenizer

    try:
        tokenizer = RobertaTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise TokenizerError(f"cannot load a RoBERTa tokenizer from {directory}: {e}") from e
    size = len(tokenizer)
    if size != expected_vocab:
        raise TokenizerError(
            f"tokenizer in {directory} has {size} tokens, expected {expected_vocab}: "
            "wrong or incomplete vocab.json/merges.txt (an empty tokenizer means the files were not read)"
        )
    return tokenizer


def tokenizer_provenance(directory: str | Path) -> dict[str, Any]:
    """Folder path and sha256 of each tokenizer file, for provenance records."""
    from cache.provenance import sha256_file

    directory = Path(directory).expanduser()
    hashes = {name: sha256_file(directory / name) for name in ROBERTA_FILES}
    return {"tokenizer": str(directory.resolve()), "tokenizer_sha256": hashes}
