"""``shipped``: the dataset's own precomputed LAION-CLAP embeddings, imported as they are.

The BSD datasets ship ``features/clap_audio_embeddings/<id>.npy`` and
``features/clap_text_embeddings/<id>.npy`` (LAION-CLAP 630k-audioset-fusion, 512-d each; the
text one from title + tags + description). This "backbone" runs no model: the runner calls
:meth:`ShippedClap.read_clip` per clip and stores the vectors as columns ``audio`` and ``text``,
so heads can be trained on the official features. A missing, unreadable, mis-shaped or
non-finite file makes that clip a failure row naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Backbone, BackboneConfig, BackboneSpec, register_backbone

DIM = 512
FOLDERS = {"audio": "clap_audio_embeddings", "text": "clap_text_embeddings"}
SPEC = BackboneSpec(
    name="shipped",
    variant="laion-clap-630k-audioset-fusion",
    sample_rate=0,
    audio_dim=DIM,
    text_dim=DIM,
    window_seconds=0.0,
    padding="zero",
    needs_checkpoint=False,
    front_end="none: imported from features/clap_{audio,text}_embeddings/<id>.npy",
)


class ShippedFeatureError(ValueError):
    """A shipped feature file is missing or unusable; the message names the file."""


def load_vector(path: Path, dim: int = DIM) -> np.ndarray:
    """One shipped embedding as a (dim,) float32 vector; raises ShippedFeatureError naming the file."""
    if not path.exists():
        raise ShippedFeatureError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # truncated / not an .npy / pickled object arrays
        raise ShippedFeatureError(f"{path}: corrupt or unreadable .npy ({type(e).__name__}: {e})") from None
    if arr.dtype.kind not in "fiu":
        raise ShippedFeatureError(f"{path}: dtype {arr.dtype} is not numeric")
    arr = np.asarray(arr, dtype=np.float32).reshape(-1) if arr.size == dim else arr
    if arr.shape != (dim,):
        raise ShippedFeatureError(f"{path}: shape {arr.shape}, expected ({dim},)")
    if not np.isfinite(arr).all():
        raise ShippedFeatureError(f"{path}: non-finite values (NaN/inf)")
    return arr


class ShippedClap(Backbone):
    """Reads the shipped CLAP vectors; has no network."""

    spec = SPEC
    precomputed = True

    def __init__(self) -> None:
        super().__init__()
        self._provenance = {
            "checkpoint": None,
            "checkpoint_sha256": None,
            "source": "dataset features/clap_audio_embeddings and features/clap_text_embeddings",
            "model": "LAION-CLAP 630k-audioset-fusion (as shipped by the dataset)",
        }

    def read_clip(self, root: str | Path, clip_id: str) -> dict[str, np.ndarray]:
        """{"audio": (512,), "text": (512,)} for one clip of the dataset at ``root``."""
        features = Path(root) / "features"
        return {col: load_vector(features / folder / f"{clip_id}.npy") for col, folder in FOLDERS.items()}

    def embed_windows(self, windows, lengths=None):  # noqa: D102
        raise NotImplementedError("shipped embeddings are imported from files (read_clip), not computed")


@register_backbone("shipped")
def build(config: BackboneConfig) -> ShippedClap:
    if config.checkpoint is not None:
        raise ValueError("shipped takes no --checkpoint: it imports the dataset's features/ folder")
    return ShippedClap()
