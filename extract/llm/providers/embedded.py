"""``embedded``: the offline default, no network.

prior = softmax over the cosine similarities between the MiniLM embedding of a clip's
cleaned metadata text and the MiniLM embeddings of the 23 class descriptions (from
``BST_description.csv`` when the dataset has it, else the built-in definitions), divided
by ``embed_temperature``. summary = the cleaned metadata text itself. A clip whose
metadata is empty after cleaning gets a missing prior / summary.

Clip vectors already in the store (``embeddings/minilm@<hash8>~metadata`` made from the same
metadata with the same weights) are read instead of encoded, and the class-sentence vectors
are kept in a file under the LLM cache folder (see :mod:`extract.llm.minilm_reuse`): with
both in place a run loads no model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from extract.text import clean_metadata

from ... import minilm_weights
from .. import minilm_reuse
from ..config import LLMConfig
from .base import LocalOutput, LocalProvider, LocalTask, register_provider

MODEL_NAME = "all-MiniLM-L6-v2"
_ENCODERS: dict[str, Any] = {}


def get_encoder(config: LLMConfig):
    """The MiniLM encoder (loaded once per process and path)."""
    key = config.minilm_path or ""
    if key not in _ENCODERS:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from extract.backbones.minilm import MiniLMEncoder

        _ENCODERS[key] = MiniLMEncoder(config.minilm_path)
    return _ENCODERS[key]


def clip_texts(task: LocalTask) -> list[str]:
    return [clean_metadata(t, g, d) for t, g, d in zip(task.title, task.tags, task.description, strict=True)]


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


_MEMO: dict[tuple[str, str], np.ndarray] = {}
_MEMO_MAX = 500_000


def encode(config: LLMConfig, texts: list[str]) -> np.ndarray:
    """(N, 384) MiniLM embeddings; texts seen before in this process are not encoded again."""
    key = config.minilm_path or ""
    todo = sorted({t for t in texts if (key, t) not in _MEMO})
    if todo:
        enc = get_encoder(config)
        vecs = enc.encode(
            todo, batch_size=config.embed_batch_size, progress=config.progress and len(todo) > 2000
        )
        if len(_MEMO) + len(todo) > _MEMO_MAX:
            _MEMO.clear()
        _MEMO.update({(key, t): v for t, v in zip(todo, vecs, strict=True)})
        if any((key, t) not in _MEMO for t in texts):  # memo was cleared and is too small: no memo
            return enc.encode(texts, batch_size=config.embed_batch_size)
    out = np.empty((len(texts), 384), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i] = _MEMO[(key, t)]
    return out


def encoder_provenance(config: LLMConfig) -> dict[str, Any]:
    """The encoder's provenance (as ``MiniLMEncoder.provenance()``), without loading it."""
    prov = minilm_weights.encoder_provenance(config.minilm_path)
    return {"text_encoder": MODEL_NAME, **{f"encoder_{k}": v for k, v in prov.items()}}


def store_of(config: LLMConfig, dataset_root) -> Path:
    """The cache store of a dataset: ``config.store`` for the run's own dataset, else its default."""
    from cache.store import default_store_path

    own = config.dataset and Path(config.dataset).resolve() == Path(dataset_root).resolve()
    return Path(config.store) if (config.store and own) else default_store_path(dataset_root)


def full_manifest(task: LocalTask, root=None):
    """The manifest of ``root`` (default: the task's dataset) as extraction loads it: every row,
    non-targets kept (the task's own when it has it)."""
    root = Path(root or task.dataset_root)
    if task.manifest is not None and root.resolve() == Path(task.dataset_root).resolve():
        return task.manifest
    from cache.manifest import load_manifest

    return load_manifest(root, require_audio=False, keep_non_targets=True)


def encode_clips(
    config: LLMConfig, texts: list[str], ids: list[str], dataset_root, digest: str
) -> tuple[np.ndarray, dict]:
    """MiniLM vectors of clips' cleaned metadata ``texts``: read from the dataset's store where a
    matching table holds them (``digest``: its manifest's), the rest encoded. Returns the vectors
    and what was reused."""
    vecs, found, info = minilm_reuse.store_vectors(
        store_of(config, dataset_root), list(ids), config.minilm_path, digest
    )
    if not found.all():
        todo = np.flatnonzero(~found)
        vecs[todo] = encode(config, [texts[i] for i in todo])
    info["encoded"] = int((~found).sum())
    return vecs, info


def class_vectors(config: LLMConfig, sentences: list[str]) -> np.ndarray:
    """MiniLM vectors of the class sentences, kept on disk between runs."""
    from ..response_cache import default_cache_dir

    return minilm_reuse.cached_encode(
        sentences, config.minilm_path, config.cache_dir or default_cache_dir(), lambda t: encode(config, t)
    )


@register_provider("embedded")
class EmbeddedProvider(LocalProvider):
    """See module docstring."""

    @property
    def model(self) -> str:
        return MODEL_NAME

    def provenance(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "model": MODEL_NAME,
            "embed_temperature": self.config.embed_temperature,
        }

    def priors(self, task: LocalTask) -> LocalOutput:
        texts = clip_texts(task)
        missing = np.array([not t for t in texts], dtype=bool)
        X, reuse = encode_clips(self.config, texts, task.ids, task.dataset_root, full_manifest(task).digest())
        C = class_vectors(self.config, [c.sentence() for c in task.class_texts])
        prior = softmax((X @ C.T) / self.config.embed_temperature, axis=1).astype(np.float32)
        prior[missing] = 0.0
        reason = ["empty metadata" if m else "" for m in missing]
        attrs = {
            "class_descriptions": task.class_source,
            "minilm_reuse": reuse,
            **encoder_provenance(self.config),
        }
        return LocalOutput(missing=missing, reason=reason, prior=prior, attrs=attrs)

    def summaries(self, task: LocalTask) -> LocalOutput:
        texts = clip_texts(task)
        missing = np.array([not t for t in texts], dtype=bool)
        return LocalOutput(
            missing=missing,
            reason=["empty metadata" if m else "" for m in missing],
            text=texts,
            attrs={"summary": "cleaned metadata text (extract.text.clean_metadata)"},
        )
