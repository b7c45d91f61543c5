"""Fine-tuning reads an empty (answered, not missing) LLM summary as an empty text."""

from __future__ import annotations

import numpy as np
import pytest

from cache.manifest import load_manifest
from cache.store import Store
from finetune.data import clip_set


def test_an_empty_summary_is_a_text_and_a_missing_one_is_refused(make_dataset, row):
    root = make_dataset([row("1", "fx-a"), row("2", "fx-o")])
    store = Store(root / "cache.zarr")
    store.write_table(
        "llm/summaries/s",
        ["1", "2"],
        {"text": ["A dog.", ""], "missing": np.array([False, False]), "reason": ["", ""]},
        {"producer": "test"},
    )
    manifest = load_manifest(root, require_audio=False)
    assert clip_set(manifest, store, summary="s", text_source="summary").texts == ["A dog.", ""]
    store.write_table(
        "llm/summaries/m",
        ["1", "2"],
        {"text": ["A dog.", ""], "missing": np.array([False, True]), "reason": ["", "request failed"]},
        {"producer": "test"},
    )
    with pytest.raises(ValueError, match="1 clip\\(s\\) have no summary in llm/summaries/m: 2"):
        clip_set(manifest, store, summary="m", text_source="summary")
