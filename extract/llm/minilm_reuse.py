"""MiniLM vectors the offline providers need without encoding them again.

* Clip texts: ``python -m extract embeddings --backbone minilm --text-source metadata`` writes
  ``embeddings/minilm@<hash8>~metadata``: the MiniLM embedding of
  ``extract.text.clean_metadata(title, tags, description)`` of every clip, exactly the text
  the ``embedded`` and ``embedded-knn`` providers encode. :func:`store_vectors` takes rows from
  such a table when everything that decides the vector matches what the provider would use:
  backbone ``minilm``, text source ``metadata``, the same weights (sha256 of
  ``model.safetensors``), float32 compute and storage, ``max_length`` 256, and the
  ``manifest_digest`` of the dataset as it is now (ids, labels and metadata text: so the
  texts are the same). Only rows marked done and OK are used; the rest is encoded.
* Class sentences (23 short texts): :func:`cached_encode` keeps their vectors in a small file
  under the LLM cache folder, keyed by the weights' hash and the texts, so a later run need
  not load the model at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..minilm_weights import DEFAULT_MAX_LENGTH, DIM, weights_sha256


def table_mismatch(attrs: dict[str, Any], sha: str, digest: str) -> str:
    """Why a table's vectors are not what the provider would compute ('' when they are)."""
    bp = attrs.get("backbone_provenance") or {}
    checks = (
        (attrs.get("backbone") == "minilm", "not a minilm table"),
        (attrs.get("text_source") == "metadata", f"text source {attrs.get('text_source')!r}, not 'metadata'"),
        (not attrs.get("random_init"), "random weights"),
        (attrs.get("checkpoint_sha256") == sha, "other weights"),
        (bp.get("compute_dtype", "float32") == "float32", f"compute dtype {bp.get('compute_dtype')}"),
        (
            int(bp.get("max_length", DEFAULT_MAX_LENGTH)) == DEFAULT_MAX_LENGTH,
            f"max_length {bp.get('max_length')}",
        ),
        ((attrs.get("columns") or {}).get("text") == [[DIM], "float32"], "text column is not float32 (384,)"),
        (attrs.get("manifest_digest") == digest, "made from other metadata (manifest digest differs)"),
    )
    return next((why for ok, why in checks if not ok), "")


def store_vectors(
    store_path: Path, ids: list[str], minilm_path: str | None, digest: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(N, 384) vectors of ``ids`` from a matching MiniLM metadata table of the store, a mask of
    the rows found, and what was used (table name, rows, or why nothing was). ``digest`` is the
    ``Manifest.digest()`` of the dataset as loaded for extraction (all rows, non-targets kept)."""
    out = np.zeros((len(ids), DIM), dtype=np.float32)
    found = np.zeros(len(ids), dtype=bool)
    if not Path(store_path).exists():
        return out, found, {"reused": 0, "why_not": f"no store {store_path}"}
    from cache.schema import OK
    from cache.store import Store

    store = Store(store_path, mode="r")
    candidates = [t for t in store.tables("embeddings") if t.startswith("embeddings/minilm@")]
    if not candidates:
        return out, found, {"reused": 0, "why_not": f"no embeddings/minilm@* table in {store_path}"}
    sha = weights_sha256(minilm_path)
    why = {}
    for group in sorted(candidates):
        attrs = store.attrs(group)
        why[group] = table_mismatch(attrs, sha, digest)
        if why[group]:
            continue
        w = store.open_rows(group)
        done = w.done_mask()
        rows_done = np.repeat(done, w.chunk_rows)[: w.n_rows]
        usable = rows_done & (w.column("status", done) == OK)
        pos = {str(i): k for k, i in enumerate(w.ids)}
        idx = np.array([pos.get(str(i), -1) for i in ids], dtype=np.int64)
        take = (idx >= 0) & usable[np.maximum(idx, 0)]
        if take.any():
            text = w.column("text", done)
            out[take] = text[idx[take]]
            found |= take
        return out, found, {"reused": int(found.sum()), "table": group}
    return out, found, {"reused": 0, "why_not": "; ".join(f"{g}: {r}" for g, r in why.items())}


def cached_encode(
    texts: list[str],
    minilm_path: str | None,
    cache_dir: str | Path,
    encode: Callable[[list[str]], np.ndarray],
) -> np.ndarray:
    """``encode(texts)``, kept in ``<cache_dir>/minilm/<key>.npy`` (key: weights hash, max_length and
    the texts) so that the next call reads the file instead."""
    key = hashlib.sha256(
        json.dumps([weights_sha256(minilm_path), DEFAULT_MAX_LENGTH, texts]).encode()
    ).hexdigest()
    path = Path(cache_dir) / "minilm" / f"{key}.npy"
    if path.exists():
        try:
            vecs = np.load(path)
            if vecs.shape == (len(texts), DIM):
                return vecs
        except (OSError, ValueError):
            pass  # a torn file: encode again
    vecs = np.asarray(encode(texts), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vecs)
    os.replace(tmp, path)
    return vecs
