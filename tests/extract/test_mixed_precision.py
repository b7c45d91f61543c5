"""Every audio backbone under fp16 and bf16 autocast: front-ends in float32, embeddings finite and
close to float32, on a full-scale tone and on near-silence (docs/parity.md).

The full-scale tone sits at a quarter of the sample rate (8 kHz at 32 kHz): its Kaldi filterbank
energies exceed float16's largest value (65504), which made PaSST's embedding NaN when the
filterbank ran under fp16 autocast. Near-silence (white noise at 1e-5) probes the other end:
energies below float16's smallest normal value.

CPU autocast (``torch.autocast("cpu", dtype=...)``) supports float16 and bfloat16 in torch 2.11,
so both run here; ``benchmarks/gpu_checks.py --parts precision`` runs the same check on CUDA.
Tolerances on the relative error ‖a − b‖ / ‖a‖ against float32, from measurement on these tiny
random models (torch 2.11, CPU): the worst case over all backbones and both signals was 1.2e-3
in fp16 (laion-clap, near-silence) and 9.4e-3 in bf16 (laion-clap, near-silence); the bounds
are about twice that. Before the front-ends ran in float32, fp16 gave NaN embeddings for PaSST
(both variants), CP-CLAP and LAION-CLAP on the tone (LAION-CLAP on near-silence too), and bf16
errors of 0.19 (PaSST hear21) and 0.22 (CP-CLAP).
"""

from __future__ import annotations

import math

import pytest
import torch

from testkit.tiny_backbones import CASES, TOLERANCE, autocast_errors, build_case, probe_signals

pytestmark = pytest.mark.usefixtures("two_torch_threads")
SLOW = {"laion-clap"}  # full HTSAT-tiny on 10 s windows at 48 kHz


@pytest.fixture(scope="module")
def backbones(tokenizer_dir):
    built = {}

    def get(case: str):
        if case not in built:
            built[case] = build_case(case, tokenizer_dir)
        return built[case]

    return get


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES])
def test_autocast_embeddings_are_finite_and_close_to_float32(case, backbones):
    rows = autocast_errors(backbones(case), torch.device("cpu"))
    assert len(rows) == 4  # two signals x fp16, bf16
    for label, dtype, ref_ok, finite, err in rows:
        assert ref_ok and finite, (case, label, dtype)
        assert err <= TOLERANCE[dtype], (
            f"{case} {label} {dtype}: relative error {err:.2e} > {TOLERANCE[dtype]:.0e}"
        )


@pytest.mark.parametrize("case", ["passt-cpjku", "passt-hear21", "cpclap"])
def test_front_ends_ignore_autocast(case, backbones):
    """The spectrogram is the float32 one, bit for bit, whatever the autocast (would overflow in fp16)."""
    model = backbones(case)
    wave = probe_signals(model.spec.sample_rate, model.spec.window_samples)["full-scale tone"][None]
    with torch.inference_mode():
        ref = model.spectrogram(wave)
        for dtype in (torch.float16, torch.bfloat16):
            with torch.autocast("cpu", dtype=dtype):
                spec = model.spectrogram(wave)
            assert spec.dtype == torch.float32
            torch.testing.assert_close(spec, ref, rtol=0, atol=0)
    if case == "passt-cpjku":  # Kaldi log energies: the tone's lie beyond float16's range
        assert ref.max() > math.log(65504.0)


@pytest.mark.slow
def test_laion_clap_spectrogram_ignores_autocast(backbones):
    model = backbones("laion-clap")
    branch = model.clap.audio_branch
    wave = probe_signals(48000, 480_000)["full-scale tone"][None]
    with torch.inference_mode():
        ref = branch.logmel_extractor(branch.spectrogram_extractor(wave))
        with torch.autocast("cpu", dtype=torch.float16):
            spec = branch.logmel_extractor(branch.spectrogram_extractor(wave))
    assert spec.dtype == torch.float32
    torch.testing.assert_close(spec, ref, rtol=0, atol=0)


def test_run_in_float32_keeps_state_dict_names_and_survives_deepcopy():
    import copy

    from extract.backbones.precision import run_in_float32

    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    keys = list(layer.state_dict())
    x = torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    assert run_in_float32(run_in_float32(layer)) is layer  # in place; a second call changes nothing
    assert type(layer).__mro__[1] is torch.nn.Linear and list(layer.state_dict()) == keys
    for module in (layer, copy.deepcopy(layer)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(x.bfloat16())
        assert out.dtype == torch.float32
        expected = torch.nn.functional.linear(x.bfloat16().float(), layer.weight, layer.bias)
        torch.testing.assert_close(out, expected)
