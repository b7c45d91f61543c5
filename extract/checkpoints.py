"""Strict, safe loading of local checkpoint files."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not match the architecture."""


def torch_load(path: str | Path, *, weights_only: bool = True) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` unless the caller knows the format needs pickles."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file not found: {path} (weights are never downloaded; see README 'Checkpoints')"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot load checkpoint {path}: {e}") from e


def _allowed(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "checkpoint",
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
) -> dict[str, list[str]]:
    """Load with a full key and shape check.

    Missing / unexpected keys and shape mismatches are reported by name and raise
    :class:`CheckpointError` unless every such key matches a glob in the explicit allow-lists.
    Returns the allowed missing and unexpected keys.
    """
    allow_missing, allow_unexpected = list(allow_missing), list(allow_unexpected)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in own)
    shape_bad = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    bad_missing = [k for k in missing if not _allowed(k, allow_missing)]
    bad_unexpected = [k for k in unexpected if not _allowed(k, allow_unexpected)]
    if bad_missing or bad_unexpected or shape_bad:

        def block(title: str, keys: list[str]) -> str:
            if not keys:
                return ""
            more = f"\n    … and {len(keys) - 20} more" if len(keys) > 20 else ""
            return f"\n  {title} ({len(keys)}):\n    " + "\n    ".join(keys[:20]) + more

        raise CheckpointError(
            f"{source} does not match {type(model).__name__}:"
            + block("missing keys", bad_missing)
            + block("unexpected keys", bad_unexpected)
            + block("shape mismatches", shape_bad)
            + "\n  (pass an explicit allow-list, e.g. --allow-missing 'pattern*', only if this is intended)"
        )
    model.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return {"missing": missing, "unexpected": unexpected}
