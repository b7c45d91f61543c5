"""MiniLM text encoder: batching by token count, input order, bfloat16 compute option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.backbones import BackboneConfig, build_backbone

TEXTS = [
    "dog barking in the park",
    "",
    "rain on a tin roof, recorded at night with a stereo pair of microphones",
    "laser",
    "kick drum sample 120 bpm, dry",
    "thunder rumble far away " * 80,
    "piano chord C major",
]


@pytest.fixture(scope="module")
def minilm():
    return build_backbone(BackboneConfig("minilm"))


def test_batches_by_token_count_keep_input_order_and_equal_single_texts(minilm):
    with torch.inference_mode():
        batched = minilm.embed_texts(TEXTS, batch_size=3)
        alone = np.concatenate([minilm.embed_text([t]).numpy() for t in TEXTS])
    assert batched.shape == (len(TEXTS), 384) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, alone, rtol=0, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # the long text is past max_length tokens: both paths truncate it alike
    assert len(minilm.tokenizer(TEXTS[5])["input_ids"]) > minilm.max_length


def test_bfloat16_compute_is_close_to_float32_and_recorded(minilm):
    bf = build_backbone(BackboneConfig("minilm", overrides={"compute_dtype": "bfloat16"}))
    assert (
        bf.provenance()["compute_dtype"] == "bfloat16" and minilm.provenance()["compute_dtype"] == "float32"
    )
    a, b = minilm.encode(TEXTS), bf.encode(TEXTS)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99 and not np.array_equal(a, b)


def test_bad_overrides_are_refused():
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        build_backbone(BackboneConfig("minilm", overrides={"compute_dtype": "int8"}))
    with pytest.raises(ValueError, match="unknown override"):
        build_backbone(BackboneConfig("minilm", overrides={"layers": 2}))
