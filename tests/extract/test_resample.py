"""SparseResample: torchaudio's default sinc resampler without its zero taps gives its results."""

import pytest
import torch
import torchaudio

from extract.audio import SparseResample, resample


@pytest.mark.parametrize(
    "orig,new", [(44100, 16000), (48000, 16000), (22050, 32000), (16000, 44100), (8000, 16000)]
)
@pytest.mark.parametrize("length", [1, 7, 440, 441, 4411, 30000])
def test_matches_torchaudio_resample(orig, new, length):
    x = torch.randn(length, generator=torch.Generator().manual_seed(length))
    ref = torchaudio.transforms.Resample(orig, new)(x)
    got = SparseResample(orig, new)(x)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=0)


def test_batch_dims_and_group_count_do_not_change_results():
    x = torch.randn(2, 3, 5000, generator=torch.Generator().manual_seed(0))
    ref = torchaudio.transforms.Resample(44100, 16000)(x)
    for groups in (1, 3, 8, 160, 1000):
        torch.testing.assert_close(SparseResample(44100, 16000, groups)(x), ref, atol=2e-6, rtol=0)
    torch.testing.assert_close(resample(x[0, 0], 44100, 16000), ref[0, 0], atol=2e-6, rtol=0)


def test_skips_zero_taps():
    r = SparseResample(44100, 16000)
    used = sum(k.shape[0] * k.shape[1] for *_, k in r.parts)
    assert used < r.taps * r.new / 4  # torchaudio multiplies (160 x 475); most of it is zeros
