"""Synthetic audio for the demo dataset: one vectorised numpy generator per class.

Each top level has its own family of generators (music = rhythmic/pitched sequences,
instrument samples = one decaying or sustained note, speech = formant-filtered glottal
pulses in syllables, sound effects = a pool of event generators, soundscapes = a noise bed
with sparse events). Sibling classes share the family's generators and differ only in the
distributions of their parameters, which overlap, so a log-mel statistics feature finds
the top level more easily than the class.

Everything is float32 at 44.1 kHz and drawn from the ``numpy.random.Generator`` passed in,
so the same generator state gives the same samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft as sfft

SR = 44100
_TABLE = 2048
Rng = np.random.Generator


# ---------------------------------------------------------------------------- primitives
def _fast_len(n: int) -> int:
    return sfft.next_fast_len(int(n), real=True)


def _freqs(n_fft: int) -> np.ndarray:
    f = np.fft.rfftfreq(n_fft, 1.0 / SR).astype(np.float32)
    f[0] = f[1]
    return f


def _band(f: np.ndarray, fc: float, bw_oct: float, tilt: float = 0.0) -> np.ndarray:
    """Gaussian band in log-frequency (centre ``fc``, width ``bw_oct`` octaves) times f^-tilt/2."""
    g = np.exp(-0.5 * (np.log2(f / fc) / bw_oct) ** 2)
    if tilt:
        g = g * (f / fc) ** (-tilt / 2)
    return g.astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    r = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return x / r if r > 1e-12 else x


_BANK_SIZE = 1 << 22
_BANK: np.ndarray | None = None


def _bank() -> np.ndarray:
    """A fixed bank of standard-normal float32 values; clips take random slices of it
    (much cheaper than drawing fresh normals for every sample, and just as deterministic)."""
    global _BANK
    if _BANK is None:
        _BANK = np.random.default_rng(0x5EED).standard_normal(_BANK_SIZE, dtype=np.float32)
    return _BANK


def white(rng: Rng, n: int) -> np.ndarray:
    """``n`` standard-normal float32 values: a random slice of the bank (tiled past its size)."""
    bank = _bank()
    start = int(rng.integers(0, _BANK_SIZE))
    idx = (start + np.arange(n, dtype=np.int64) * (1 + 2 * int(rng.integers(0, 3)))) & (_BANK_SIZE - 1)
    return bank[idx] * (1.0 if rng.random() < 0.5 else -1.0)


def noise(rng: Rng, n: int, shape: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Unit-RMS Gaussian noise of length ``n`` whose amplitude spectrum is ``shape(freqs)``."""
    nf = _fast_len(max(n, 16))
    f = _freqs(nf)
    w = white(rng, 2 * f.size)
    spec = w[: f.size] + 1j * w[f.size :]
    x = sfft.irfft(spec * shape(f), nf)[:n].astype(np.float32)
    return _unit(x)


def filt(x: np.ndarray, shape: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase FFT filter of ``x`` with amplitude response ``shape(freqs)``."""
    n = x.size
    nf = _fast_len(max(n, 16))
    return sfft.irfft(sfft.rfft(x, nf) * shape(_freqs(nf)), nf)[:n].astype(np.float32)


def harm_table(amps: np.ndarray, ratios: np.ndarray | None = None) -> np.ndarray:
    """One period of sum_k amps[k] sin(2π ratios[k] φ) (ratios default 1..K) sampled at _TABLE points."""
    amps = np.asarray(amps, np.float32)
    k = np.arange(1, amps.size + 1, dtype=np.float32) if ratios is None else np.asarray(ratios, np.float32)
    ph = np.arange(_TABLE, dtype=np.float32) / _TABLE
    return (amps[:, None] * np.sin(2 * np.pi * k[:, None] * ph[None, :])).sum(0).astype(np.float32)


def rolloff_amps(
    f0_max: float, slope: float, geometric: float | None = None, odd_only: bool = False, max_h: int = 60
) -> np.ndarray:
    """Harmonic amplitudes 1/k^slope (or geometric**k) below Nyquist for pitch up to ``f0_max``."""
    kmax = int(max(1, min(max_h, (SR / 2 - 500) // max(f0_max, 20.0))))
    k = np.arange(1, kmax + 1, dtype=np.float32)
    a = geometric ** (k - 1) if geometric is not None else 1.0 / k**slope
    if odd_only:
        a = np.where(k % 2 == 1, a, a * 0.1)
    return a.astype(np.float32)


def osc(table: np.ndarray, freq: float | np.ndarray, n: int, phase0: float = 0.0) -> np.ndarray:
    """Wavetable oscillator; ``freq`` a scalar or per-sample array (Hz)."""
    if np.ndim(freq) == 0:  # 16.16 fixed-point phase accumulator
        step = int(round(float(freq) * _TABLE / SR * 65536))
        acc = np.arange(n, dtype=np.int64) * step + int(phase0 * _TABLE * 65536)
        return table[(acc >> 16) & (_TABLE - 1)]
    ph = np.cumsum(np.asarray(freq, np.float64)[:n] * (_TABLE / SR)) + phase0 * _TABLE
    return table[ph.astype(np.int64) & (_TABLE - 1)]


def decay_env(n: int, attack: float, decay: float, start: int = 0) -> np.ndarray:
    """Attack/exponential-decay envelope starting at sample ``start`` (seconds for attack/decay)."""
    t = np.arange(n, dtype=np.float32) - start
    t = np.maximum(t, 0) / SR
    env = (1 - np.exp(-t / max(attack, 1e-4))) * np.exp(-t / max(decay, 1e-3))
    env[: max(start, 0)] = 0
    return env.astype(np.float32)


def smooth_walk(rng: Rng, n: int, rate_hz: float, depth: float) -> np.ndarray:
    """Slow random modulation (mean 0, about ``depth``) with breakpoints every 1/rate_hz s."""
    k = max(2, int(n / SR * rate_hz) + 2)
    pts = rng.standard_normal(k).astype(np.float32) * depth
    return np.interp(np.linspace(0, k - 1, n, dtype=np.float32), np.arange(k), pts).astype(np.float32)


def place(out: np.ndarray, ev: np.ndarray, pos: int, gain: float = 1.0) -> None:
    if pos >= out.size or pos + ev.size <= 0:
        return
    a, b = max(pos, 0), min(out.size, pos + ev.size)
    out[a:b] += gain * ev[a - pos : b - pos]


def onsets(rng: Rng, n: int, rate: float, regular: float = 0.0, max_events: int = 120) -> np.ndarray:
    """Event start samples: Poisson at ``rate``/s, or a jittered grid when ``regular`` > 0 (0..1)."""
    dur = n / SR
    if regular > 0:
        step = 1.0 / max(rate, 1e-3)
        t = np.arange(rng.uniform(0, step), dur, step)
        t = t + rng.normal(0, step * (1 - regular) * 0.3, t.size)
    else:
        k = rng.poisson(max(rate * dur, 0.0)) + 1
        t = np.sort(rng.uniform(0, dur * 0.95, k))
    t = t[(t >= 0) & (t < dur)][:max_events]
    if t.size == 0:  # always at least one event
        t = np.array([rng.uniform(0, dur * 0.5)])
    return (t * SR).astype(np.int64)


# ---------------------------------------------------------------------------- event sounds
def hit(
    rng: Rng,
    f0: float,
    decay: float,
    noise_mix: float,
    fc: float,
    drop: float = 0.0,
    modal: bool = False,
    max_len: float = 1.5,
) -> np.ndarray:
    """A percussive hit: (in)harmonic partials with a pitch drop plus band noise, exp decay."""
    n = int(SR * min(max_len, decay * 6 + 0.02))
    n = max(n, 256)
    ratios = np.array([1.0, 1.59, 2.14, 2.65, 3.16, 3.65]) if modal else np.arange(1, 5, dtype=float)
    amps = rng.uniform(0.2, 1.0, ratios.size) / np.arange(1, ratios.size + 1)
    tab = harm_table(amps, ratios)
    freq = f0 * (1 + drop * np.exp(-np.arange(n, dtype=np.float32) / (0.03 * SR)))
    tone = osc(tab, freq, n)
    nz = noise(rng, n, lambda f: _band(f, fc, 1.2))
    env = decay_env(n, 0.0008, decay)
    return ((1 - noise_mix) * _unit(tone) + noise_mix * nz) * env


def chirp(
    rng: Rng, f_start: float, f_end: float, dur: float, harmonics: int = 1, n: int | None = None
) -> np.ndarray:
    """A frequency sweep (exponential), Hann-windowed; ``harmonics`` > 1 adds overtones."""
    n = max(int(dur * SR), 64) if n is None else n
    f = f_start * (f_end / f_start) ** np.linspace(0, 1, n, dtype=np.float32)
    f = np.minimum(f, SR / 2 / max(harmonics, 1) - 200)
    tab = harm_table(1.0 / np.arange(1, harmonics + 1))
    return osc(tab, f, n) * np.hanning(n).astype(np.float32)


def voice_source(rng: Rng, f0: np.ndarray, slope: float = 1.3) -> np.ndarray:
    """Glottal-like pulse source: harmonic table with 1/k^slope following the f0 contour."""
    tab = harm_table(rolloff_amps(float(np.max(f0)), slope, max_h=120))
    return osc(tab, f0, f0.size)


_VOWELS = np.array(
    [
        [730, 1090, 2440],
        [270, 2290, 3010],
        [530, 1840, 2480],
        [570, 840, 2410],
        [300, 870, 2240],
        [660, 1720, 2410],
        [440, 1020, 2240],
    ],
    dtype=np.float32,
)


def formant_shape(formants: np.ndarray, bw: float = 0.18) -> Callable[[np.ndarray], np.ndarray]:
    def shape(f: np.ndarray) -> np.ndarray:
        g = np.zeros_like(f)
        for i, fc in enumerate(formants):
            g += (0.9**i) * np.exp(-0.5 * (np.log2(f / fc) / bw) ** 2)
        return g * np.minimum(1.0, f / 120.0) + 0.02

    return shape


def speech(
    rng: Rng, n: int, f0_mean: float, rate: float, pitch_range: float = 0.15, monotone: bool = False
) -> np.ndarray:
    """Formant-like speech: voiced syllables with vowel formants, fricatives, pauses."""
    out = np.zeros(n, np.float32)
    wobble = 0.0 if monotone else pitch_range
    f0 = f0_mean * (
        1 + smooth_walk(rng, n, 3.0, wobble) + (0 if monotone else smooth_walk(rng, n, 0.5, wobble))
    )
    f0 = np.clip(f0, 60, 400)
    src = voice_source(rng, f0)
    pos = int(rng.uniform(0, 0.15) * SR)
    syl_in_phrase = 0
    phrase_len = rng.integers(3, 9)
    while pos < n:
        d = int(rng.uniform(0.09, 0.28) / rate * 4.5 * SR)
        seg_end = min(n, pos + d)
        seg = src[pos:seg_end]
        if seg.size > 64:
            vowel = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.9, 1.15) * (f0_mean / 150) ** 0.15
            v = filt(seg, formant_shape(vowel))
            v *= np.hanning(seg.size).astype(np.float32) ** 0.6
            out[pos:seg_end] += _unit(v)
            if rng.random() < 0.45:  # fricative / plosive burst at the syllable onset
                fl = int(rng.uniform(0.02, 0.07) * SR)
                fr = noise(rng, fl, lambda f: _band(f, rng.uniform(2500, 7000), 0.8)) * np.hanning(fl).astype(
                    np.float32
                )
                place(out, fr * rng.uniform(0.15, 0.5), pos - fl // 2)
        pos = seg_end
        syl_in_phrase += 1
        if syl_in_phrase >= phrase_len:
            pos += int(rng.uniform(0.12, 0.5) * SR)
            syl_in_phrase, phrase_len = 0, rng.integers(3, 9)
    return out


# ---------------------------------------------------------------------------- music (m)
_SCALES = (np.array([0, 2, 4, 5, 7, 9, 11]), np.array([0, 2, 3, 5, 7, 8, 10]), np.array([0, 3, 5, 7, 10]))


def _drum_track(rng: Rng, n: int, beat: float, density: float) -> np.ndarray:
    out = np.zeros(n, np.float32)
    kick = hit(rng, rng.uniform(45, 70), rng.uniform(0.08, 0.2), 0.1, 150, drop=1.5)
    snare = hit(
        rng, rng.uniform(160, 260), rng.uniform(0.07, 0.15), rng.uniform(0.5, 0.85), rng.uniform(1500, 4000)
    )
    hat = hit(rng, 6000, rng.uniform(0.02, 0.06), 0.95, rng.uniform(6000, 10000))
    tom = hit(rng, rng.uniform(90, 180), rng.uniform(0.1, 0.25), 0.3, 600, drop=0.5)
    step = beat / 2
    steps = int(n / SR / step) + 1
    for s in range(steps):
        p = int(s * step * SR + rng.normal(0, 0.004) * SR)
        if s % 8 in (0, 5) or (rng.random() < 0.15 * density):
            place(out, kick, p, rng.uniform(0.7, 1.0))
        if s % 4 == 2 or rng.random() < 0.1 * density:
            place(out, snare, p, rng.uniform(0.5, 0.9))
        if rng.random() < 0.35 + 0.5 * density:
            place(out, hat, p, rng.uniform(0.15, 0.4))
        if rng.random() < 0.12 * density:
            place(out, tom, p, rng.uniform(0.4, 0.8))
    return out


def _voice_line(
    rng: Rng,
    n: int,
    beat: float,
    root_hz: float,
    legato: float,
    vibrato: float,
    chord: tuple[int, ...] = (0,),
    bright: float = 0.7,
    note_beats=(0.5, 1, 1, 2),
) -> np.ndarray:
    """A melody (or block chords when ``chord`` has several intervals) as one vectorised pass."""
    scale = _SCALES[rng.integers(len(_SCALES))]
    durs, t = [], 0.0
    while t < n / SR:
        d = beat * float(rng.choice(note_beats))
        durs.append(d)
        t += d
    k = len(durs)
    degrees = np.cumsum(rng.integers(-2, 3, k)) % (len(scale) * 2)
    semis = scale[degrees % len(scale)] + 12 * (degrees // len(scale))
    starts = (np.concatenate([[0.0], np.cumsum(durs)[:-1]]) * SR).astype(np.int64)
    idx = np.repeat(np.arange(k), np.diff(np.append(starts, max(n, starts[-1] + 1))))[:n]
    if idx.size < n:
        idx = np.pad(idx, (0, n - idx.size), mode="edge")
    t_in = (np.arange(n) - starts[idx]).astype(np.float32) / SR
    note_len = np.asarray(durs, np.float32)[idx]
    env = (1 - np.exp(-t_in / 0.01)) * np.exp(-t_in / (note_len * (0.3 + 2 * legato)))
    vib = 1 + vibrato * np.sin(2 * np.pi * 5.5 * np.arange(n, dtype=np.float32) / SR)
    out = np.zeros(n, np.float32)
    for iv in chord:
        f = root_hz * 2 ** ((semis[idx] + iv) / 12.0) * vib
        tab = harm_table(rolloff_amps(float(f.max()), 1.0, geometric=bright))
        out += osc(tab, f, n, rng.random())
    return out * env


def gen_music(
    rng: Rng, n: int, p_drums: float, n_voices: tuple[int, int], chord_p: float, pitched_perc_p: float = 0.0
) -> np.ndarray:
    beat = 60.0 / rng.uniform(75, 165)
    out = np.zeros(n, np.float32)
    has_drums = rng.random() < p_drums
    if has_drums:
        out += 0.9 * _unit(_drum_track(rng, n, beat, rng.uniform(0, 1)))
    voices = int(rng.integers(n_voices[0], n_voices[1] + 1))
    if voices == 0 and rng.random() < pitched_perc_p:  # tuned percussion (marimba-like short notes)
        out += 0.6 * _unit(
            _voice_line(rng, n, beat, rng.uniform(200, 500), 0.0, 0.0, bright=0.4, note_beats=(0.5, 0.5, 1))
        )
    for v in range(voices):
        chord = (0, 4, 7) if (v == 0 and rng.random() < chord_p) else (0,)
        root = rng.uniform(90, 500) / (2 if v == 1 else 1)
        line = _voice_line(
            rng,
            n,
            beat,
            root,
            rng.uniform(0.1, 1.0),
            rng.uniform(0, 0.01),
            chord,
            bright=rng.uniform(0.4, 0.85),
        )
        out += _unit(line) * (1.0 if v == 0 else rng.uniform(0.4, 0.8))
    if not has_drums and voices == 0:
        out += _unit(_voice_line(rng, n, beat, rng.uniform(150, 400), 0.5, 0.005))
    return out


# ---------------------------------------------------------------------------- instrument samples (is)
def gen_note(
    rng: Rng,
    n: int,
    f0: float,
    attack: float,
    decay: float,
    sustain: float,
    bright: float,
    odd: bool,
    inharm: float,
    noise_mix: float,
    noise_fc: float,
    drop: float = 0.0,
    vibrato: float = 0.0,
    sweep: float = 0.0,
    chord: int = 1,
) -> np.ndarray:
    """One instrument note (or a small chord) starting near 0, with silence after its decay."""
    start = int(rng.uniform(0.0, 0.04) * SR)
    t = np.arange(n, dtype=np.float32) / SR
    out = np.zeros(n, np.float32)
    for c in range(chord):
        fc0 = f0 * 2 ** ([0, 4, 7, 12][c] / 12)
        freq = (
            fc0 * (1 + drop * np.exp(-t / 0.04)) * (1 + vibrato * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
        )
        k = rolloff_amps(fc0 * (1 + drop), 1.0, geometric=bright, odd_only=odd, max_h=40)
        ratios = np.arange(1, k.size + 1) * np.sqrt(1 + inharm * np.arange(1, k.size + 1) ** 2)
        keep = ratios * fc0 * (1 + drop) < SR / 2 - 500
        tab_b = harm_table(k[keep], ratios[keep])
        tone = osc(tab_b, freq, n, rng.random())
        if sweep:  # filter sweep: crossfade to a dull version of the same note
            tab_d = harm_table(np.array([1.0, 0.3]), np.array([1.0, 2.0]))
            mix = np.clip(0.5 + 0.5 * np.sin(2 * np.pi * sweep * t + rng.uniform(0, 6.28)), 0, 1)
            tone = mix * tone + (1 - mix) * osc(tab_d, freq, n)
        out += tone
    env_d = decay_env(n, attack, decay, start)
    env_s = (1 - np.exp(-np.maximum(t - start / SR, 0) / max(attack, 1e-4))) * (t >= start / SR)
    rel = np.clip((n / SR - t) / 0.05, 0, 1)  # sustained notes release at the end
    env = (1 - sustain) * env_d + sustain * env_s * rel
    x = _unit(out) * env
    if noise_mix > 0:  # breath / bow / membrane noise following the note's envelope
        nz_env = (1 - sustain) * decay_env(
            n, attack, max(decay * 0.5, 0.03), start
        ) + sustain * 0.5 * env_s * rel
        nz = noise(rng, n, lambda f: _band(f, noise_fc, 1.0)) * nz_env
        x = (1 - noise_mix) * x + noise_mix * nz
    return x


# ---------------------------------------------------------------------------- sound-effect pool (fx)
def fx_impact(rng: Rng, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for p in onsets(rng, n, rng.uniform(0.5, 6), regular=rng.random() * 0.5, max_events=40):
        ev = hit(
            rng,
            rng.uniform(300, 3000),
            rng.uniform(0.01, 0.25),
            rng.uniform(0.2, 0.8),
            rng.uniform(1000, 8000),
            modal=True,
            max_len=0.8,
        )
        place(out, ev, p, rng.uniform(0.3, 1.0))
    return out


def fx_engine(rng: Rng, n: int) -> np.ndarray:
    f0 = rng.uniform(25, 90) * (
        1 + smooth_walk(rng, n, 0.7, 0.12) + np.linspace(0, rng.uniform(-0.3, 0.6), n)
    )
    tab = harm_table(rolloff_amps(float(f0.max()), 0.8, max_h=40))
    hum = osc(tab, np.clip(f0, 15, 300), n)
    rumble = noise(rng, n, lambda f: _band(f, rng.uniform(80, 400), 1.5, tilt=1.0))
    env = np.exp(-0.5 * ((np.linspace(-1, 1, n) - rng.uniform(-0.5, 0.5)) / rng.uniform(0.3, 2.0)) ** 2)
    return (0.6 * hum + rng.uniform(0.3, 0.9) * rumble) * env.astype(np.float32)


def fx_machine(rng: Rng, n: int) -> np.ndarray:
    f0 = rng.uniform(50, 420)
    hum = osc(harm_table(rolloff_amps(f0, 1.2, max_h=25)), f0 * (1 + smooth_walk(rng, n, 0.3, 0.01)), n)
    out = _unit(hum) * rng.uniform(0.3, 1.0)
    tick = hit(
        rng, rng.uniform(800, 4000), rng.uniform(0.005, 0.03), 0.7, rng.uniform(2000, 8000), modal=True
    )
    ticks = np.zeros(n, np.float32)
    for p in onsets(rng, n, rng.uniform(2, 18), regular=0.95, max_events=400):
        place(ticks, tick, p)
    out += _unit(ticks) * rng.uniform(0.2, 0.9) if ticks.any() else 0
    out += noise(rng, n, lambda f: _band(f, rng.uniform(300, 3000), 1.5)) * rng.uniform(0.1, 0.5)
    return out


def fx_steps(rng: Rng, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    clap = rng.random() < 0.35
    fc = rng.uniform(1500, 4000) if clap else rng.uniform(150, 900)
    for p in onsets(rng, n, rng.uniform(1.2, 2.5) * (2 if clap else 1), regular=0.7):
        ev = noise(rng, int(SR * 0.12), lambda f: _band(f, fc * rng.uniform(0.8, 1.25), 1.3))
        place(out, ev * decay_env(ev.size, 0.001, rng.uniform(0.01, 0.05)), p, rng.uniform(0.4, 1.0))
    return out


def fx_breath(rng: Rng, n: int) -> np.ndarray:
    fc = rng.uniform(700, 3000)
    x = noise(rng, n, formant_shape(np.array([fc, fc * 2.2, fc * 3.5]), bw=0.35))
    f_am, t_peak = rng.uniform(0.25, 1.2), rng.uniform(0, n / SR)  # one breath peaks inside the clip
    am = np.clip(np.cos(2 * np.pi * f_am * (np.arange(n) / SR - t_peak)), 0, 1) ** 1.5
    return x * (0.05 + am).astype(np.float32)


def fx_chirps(rng: Rng, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    lo, hi = sorted(rng.uniform(1800, 9000, 2))
    dur = rng.uniform(0.03, 0.2)
    for p in onsets(rng, n, rng.uniform(2, 12), regular=rng.random(), max_events=80):
        up = rng.random() < 0.5
        ev = chirp(
            rng,
            lo if up else hi,
            hi if up else lo,
            dur * rng.uniform(0.7, 1.3),
            harmonics=int(rng.integers(1, 3)),
        )
        place(out, ev, p, rng.uniform(0.3, 1.0))
    return out


def fx_call(rng: Rng, n: int) -> np.ndarray:
    """Harmonic vocalisation with a pitch glide and formants (bark, meow, moo, cough-like)."""
    out = np.zeros(n, np.float32)
    f0 = rng.uniform(150, 900)
    for p in onsets(rng, n, rng.uniform(0.5, 3), regular=0.4, max_events=20):
        d = rng.uniform(0.08, 0.6)
        m = int(d * SR)
        glide = f0 * (
            1 + rng.uniform(-0.4, 0.4) * np.linspace(0, 1, m, dtype=np.float32) + smooth_walk(rng, m, 8, 0.04)
        )
        ev = voice_source(rng, np.clip(glide, 60, 2000), slope=1.0)
        ev = filt(ev, formant_shape(rng.uniform(500, 3500, 3)))
        ev += rng.uniform(0, 0.5) * noise(rng, m, lambda f: _band(f, 2000, 1.5))
        place(out, _unit(ev) * np.hanning(m).astype(np.float32) ** 0.5, p, rng.uniform(0.5, 1.0))
    return out


def fx_texture(rng: Rng, n: int) -> np.ndarray:
    """Natural noise textures: gusts (slow AM low noise), rain/crackle, water."""
    kind = rng.integers(3)
    if kind == 0:
        x = noise(rng, n, lambda f: _band(f, rng.uniform(200, 900), 1.3, tilt=1.0))
        return x * (0.4 + np.clip(1 + smooth_walk(rng, n, 0.8, 0.6), 0, 2)).astype(np.float32)
    if kind == 1:
        imp = np.zeros(n, np.float32)
        k = int(rng.uniform(30, 400) * n / SR)
        imp[rng.integers(0, n, k)] = rng.standard_normal(k).astype(np.float32)
        crack = filt(imp, lambda f: _band(f, rng.uniform(1500, 7000), 1.5))
        return _unit(crack) + rng.uniform(0.1, 0.6) * noise(rng, n, lambda f: _band(f, 3000, 2.5))
    x = noise(rng, n, lambda f: _band(f, rng.uniform(400, 2000), 1.0))  # water: bubbling AM
    rate = rng.uniform(3, 15) * (1 + smooth_walk(rng, n, 2.0, 0.3)).clip(0.3, 2)
    return x * (1 + 0.8 * np.sin(2 * np.pi * np.cumsum(rate, dtype=np.float64) / SR)).astype(np.float32)


def fx_boom(rng: Rng, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for p in onsets(rng, n, rng.uniform(0.1, 0.6), max_events=4):
        d = rng.uniform(0.5, 3.0)
        m = int(d * SR)
        ev = noise(rng, m, lambda f: _band(f, rng.uniform(60, 300), 2.0, tilt=1.5)) * decay_env(
            m, 0.005, d / 4
        )
        place(out, ev, p)
    return out


def fx_granular(rng: Rng, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    lo, hi = sorted(rng.uniform(80, 8000, 2))
    tab = harm_table(rng.uniform(0, 1, 6))
    for p in onsets(rng, n, rng.uniform(5, 40), max_events=150):
        m = int(rng.uniform(0.01, 0.12) * SR)
        f = np.exp(rng.uniform(np.log(lo), np.log(hi + 1)))
        g = (
            osc(tab, min(f, 3000.0), m)
            if rng.random() < 0.6
            else noise(rng, m, lambda fr, f=f: _band(fr, f, 0.5))
        )
        place(out, g * np.hanning(m).astype(np.float32), p, rng.uniform(0.2, 1.0))
    if rng.random() < 0.4:  # reversed envelope: swell then abrupt stop
        out *= np.linspace(0, 1, n, dtype=np.float32) ** 2
    return out


def fx_sweep(rng: Rng, n: int) -> np.ndarray:
    kind = rng.integers(3)
    out = np.zeros(n, np.float32)
    if kind == 0:  # beeps
        f = rng.choice([440.0, 880.0, 1000.0, 1200.0, 2000.0]) * rng.uniform(0.9, 1.1)
        on = ((np.arange(n) / SR * rng.uniform(2, 10)) % 1.0 < rng.uniform(0.2, 0.7)).astype(np.float32)
        return osc(harm_table(np.array([1.0, rng.uniform(0, 0.3)])), f, n) * on
    for p in onsets(rng, n, rng.uniform(0.5, 3), max_events=12):
        if kind == 1:  # laser / zap: fast downward chirp
            ev = chirp(rng, rng.uniform(2000, 8000), rng.uniform(100, 600), rng.uniform(0.05, 0.3), 2)
        else:  # whoosh: noise through a rising/falling band
            m = int(rng.uniform(0.3, 1.2) * SR)
            ev = noise(rng, m, lambda f: _band(f, rng.uniform(500, 4000), 1.0)) * np.hanning(m).astype(
                np.float32
            )
            ev += 0.5 * chirp(rng, rng.uniform(200, 800), rng.uniform(1000, 5000), m / SR, n=m)
        place(out, ev, p, rng.uniform(0.5, 1.0))
    return out


FX_POOL: dict[str, Callable[[Rng, int], np.ndarray]] = {
    "impact": fx_impact,
    "engine": fx_engine,
    "machine": fx_machine,
    "steps": fx_steps,
    "breath": fx_breath,
    "chirps": fx_chirps,
    "call": fx_call,
    "texture": fx_texture,
    "boom": fx_boom,
    "granular": fx_granular,
    "sweep": fx_sweep,
}

#: each fx class = a mixture over the shared pool (probability of being the main generator)
FX_MIX: dict[str, dict[str, float]] = {
    "fx-o": {
        "impact": 0.55,
        "machine": 0.1,
        "steps": 0.1,
        "texture": 0.05,
        "boom": 0.05,
        "granular": 0.05,
        "sweep": 0.05,
        "engine": 0.05,
    },
    "fx-v": {"engine": 0.7, "boom": 0.05, "texture": 0.1, "machine": 0.1, "sweep": 0.05},
    "fx-m": {"machine": 0.6, "engine": 0.15, "impact": 0.15, "texture": 0.05, "granular": 0.05},
    "fx-h": {"steps": 0.4, "breath": 0.3, "call": 0.1, "impact": 0.15, "texture": 0.05},
    "fx-a": {"chirps": 0.45, "call": 0.45, "texture": 0.05, "breath": 0.05},
    "fx-n": {"texture": 0.6, "boom": 0.25, "impact": 0.05, "chirps": 0.05, "engine": 0.05},
    "fx-ex": {"granular": 0.45, "sweep": 0.15, "texture": 0.15, "machine": 0.1, "call": 0.05, "impact": 0.1},
    "fx-el": {"sweep": 0.65, "granular": 0.15, "machine": 0.1, "chirps": 0.1},
}


def _pick(rng: Rng, mix: dict[str, float]) -> str:
    names = list(mix)
    p = np.array([mix[k] for k in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def gen_fx(rng: Rng, n: int, code: str) -> np.ndarray:
    mix = FX_MIX[code]
    out = _unit(FX_POOL[_pick(rng, mix)](rng, n))
    if rng.random() < 0.3:  # a quieter second layer from the same class mixture
        out += 0.3 * _unit(FX_POOL[_pick(rng, mix)](rng, n))
    return out


# ---------------------------------------------------------------------------- soundscapes (ss)
SS_LAYERS: dict[str, dict[str, float]] = {  # probability that each event layer is present
    "ss-n": {"chirps": 0.7, "texture": 0.4, "call": 0.15, "engine": 0.05},
    "ss-i": {"machine": 0.5, "impact": 0.5, "steps": 0.3, "speech": 0.4, "sweep": 0.05},
    "ss-u": {"engine": 0.8, "sweep": 0.2, "speech": 0.3, "steps": 0.25, "impact": 0.15},
    "ss-s": {"drone": 0.8, "granular": 0.35, "sweep": 0.3, "texture": 0.2, "chirps": 0.1},
}
SS_BED: dict[str, tuple[tuple[float, float], tuple[float, float], float]] = {  # (fc range, tilt range, level)
    "ss-n": ((400, 3000), (0.3, 1.2), 0.6),
    "ss-i": ((100, 600), (0.5, 1.5), 0.3),
    "ss-u": ((60, 300), (1.0, 2.0), 0.9),
    "ss-s": ((100, 3000), (0.0, 1.5), 0.4),
}


def _drone(rng: Rng, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    root = rng.uniform(40, 220)
    for iv in rng.choice([0, 7, 12, 15, 19, 24], size=int(rng.integers(2, 5)), replace=False):
        f = root * 2 ** (iv / 12) * (1 + smooth_walk(rng, n, 0.2, 0.004))
        out += osc(
            harm_table(rolloff_amps(float(f.max()), 1.0, geometric=rng.uniform(0.3, 0.8), max_h=20)),
            f,
            n,
            rng.random(),
        )
    return out * (1 + 0.5 * smooth_walk(rng, n, 0.3, 1.0)).clip(0.2, 2)


def gen_scape(rng: Rng, n: int, code: str) -> np.ndarray:
    (flo, fhi), (tlo, thi), level = SS_BED[code]
    fc, tilt = rng.uniform(flo, fhi), rng.uniform(tlo, thi)
    out = level * rng.uniform(0.6, 1.4) * noise(rng, n, lambda f: _band(f, fc, 2.5, tilt=tilt))
    out *= (1 + smooth_walk(rng, n, 0.3, 0.25)).clip(0.3, 2)
    any_layer = False
    for name, p in SS_LAYERS[code].items():
        if rng.random() >= p:
            continue
        any_layer = True
        if name == "speech":
            layer = filt(
                speech(rng, n, rng.uniform(100, 220), rng.uniform(3.5, 5.5)), lambda f: _band(f, 600, 1.5)
            )
        elif name == "drone":
            layer = _drone(rng, n)
        else:
            layer = FX_POOL[name](rng, n)
        out += _unit(layer) * rng.uniform(0.15, 0.6)
    if not any_layer and code == "ss-s":
        out += 0.5 * _unit(_drone(rng, n))
    return out


# ---------------------------------------------------------------------------- per-class entry point
def _gen_m(rng: Rng, n: int, code: str) -> np.ndarray:
    if code == "m-sp":
        return gen_music(rng, n, 1.0, (0, 0), 0.0, pitched_perc_p=0.25)
    if code == "m-si":
        return gen_music(rng, n, 0.1, (1, 1), 0.1)
    return gen_music(rng, n, 0.6, (1, 4), 0.7)


def _gen_is(rng: Rng, n: int, code: str) -> np.ndarray:
    u = rng.uniform
    if code == "is-p":
        return gen_note(
            rng,
            n,
            u(50, 400),
            u(0.0005, 0.003),
            u(0.04, 0.4),
            0.0,
            u(0.3, 0.7),
            False,
            u(0.05, 0.4),
            u(0.3, 0.9),
            u(300, 7000),
            drop=u(0.0, 1.0),
        )
    if code == "is-s":
        bowed = rng.random() < 0.35
        return gen_note(
            rng,
            n,
            u(80, 800),
            u(0.05, 0.2) if bowed else u(0.001, 0.006),
            u(0.3, 2.0),
            u(0.6, 0.9) if bowed else 0.0,
            u(0.6, 0.9),
            False,
            u(0, 0.0008),
            u(0.02, 0.12),
            u(1500, 5000),
            vibrato=u(0.002, 0.008) if bowed else 0.0,
        )
    if code == "is-w":
        return gen_note(
            rng,
            n,
            u(140, 1000),
            u(0.03, 0.15),
            u(0.5, 2.0),
            u(0.6, 1.0),
            u(0.3, 0.7),
            rng.random() < 0.5,
            0.0,
            u(0.05, 0.3),
            u(1000, 4000),
            vibrato=u(0, 0.006),
        )
    if code == "is-k":
        return gen_note(
            rng,
            n,
            u(50, 1000),
            u(0.001, 0.004),
            u(0.6, 3.0),
            u(0.0, 0.2),
            u(0.55, 0.8),
            False,
            u(0.0002, 0.002),
            u(0.0, 0.06),
            3000,
            chord=int(rng.choice([1, 1, 2, 3])),
        )
    # is-e
    return gen_note(
        rng,
        n,
        u(40, 800),
        u(0.001, 0.05),
        u(0.2, 2.0),
        u(0.3, 1.0),
        u(0.7, 0.95),
        rng.random() < 0.4,
        0.0,
        u(0.0, 0.1),
        5000,
        vibrato=u(0, 0.01),
        sweep=u(0.2, 6) if rng.random() < 0.6 else 0.0,
        chord=int(rng.choice([1, 1, 2])),
    )


def _gen_sp(rng: Rng, n: int, code: str) -> np.ndarray:
    u = rng.uniform
    if code == "sp-s":
        x = speech(rng, n, u(85, 240), u(3.5, 5.5))
        return x + u(0.0, 0.08) * noise(rng, n, lambda f: _band(f, 500, 2.5, tilt=1.0))
    if code == "sp-c":
        k = int(rng.integers(1, 6))
        x = np.zeros(n, np.float32)
        for i in range(k):
            x += _unit(speech(rng, n, u(85, 260), u(3.5, 6.0))) * (1.0 if i == 0 else u(0.3, 0.9))
        babble = noise(rng, n, formant_shape(np.array([500, 1500, 2500]), bw=0.6))
        babble *= (1 + smooth_walk(rng, n, 4, 0.4)).clip(0.2, 2)
        return _unit(x) + u(0.15, 0.8) * babble
    x = speech(rng, n, u(80, 220), u(3.5, 5.5), monotone=rng.random() < 0.35)  # sp-p
    kind = rng.integers(4)
    strength = u(0.3, 1.0)
    if kind == 0:  # telephone band
        y = filt(x, lambda f: _band(f, 1100, 0.5 + 1.5 * (1 - strength)))
    elif kind == 1:  # ring modulation (robot)
        y = x * (1 - strength + strength * np.sin(2 * np.pi * u(30, 120) * np.arange(n) / SR)).astype(
            np.float32
        )
    elif kind == 2:  # bit crush + clipping
        q = 2 ** int(3 + 6 * (1 - strength))
        y = np.tanh(np.round(_unit(x) * q) / q * (1 + 4 * strength))
    else:  # radio: band-limited + static
        y = filt(x, lambda f: _band(f, 1500, 0.9)) + strength * 0.4 * noise(
            rng, n, lambda f: _band(f, 4000, 2.0)
        )
    return y.astype(np.float32)


def synth_clip(rng: Rng, code: str, duration: float) -> np.ndarray:
    """Mono float32 audio at 44.1 kHz for class ``code``, peak-normalised to a random level."""
    n = max(int(round(duration * SR)), 64)
    top = code.split("-")[0]
    if top == "m":
        x = _gen_m(rng, n, code)
    elif top == "is":
        x = _gen_is(rng, n, code)
    elif top == "sp":
        x = _gen_sp(rng, n, code)
    elif top == "fx":
        x = gen_fx(rng, n, code)
    else:
        x = gen_scape(rng, n, code)
    x = np.nan_to_num(np.asarray(x, np.float32)[:n])
    x = x - float(x.mean())
    fade = min(n // 4, int(0.004 * SR))
    if fade > 1:  # short fades against clicks, before the level is set
        ramp = np.linspace(0, 1, fade, dtype=np.float32)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    peak = float(np.max(np.abs(x))) or 1.0
    x = x / peak * (10 ** (rng.uniform(-18, -1) / 20))
    x += (10 ** (rng.uniform(-75, -60) / 20)) * white(rng, n)  # noise floor
    return np.clip(x, -1, 1)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------------------- log-mel statistics
def _mel_fb(n_fft: int = 1024, n_mels: int = 64, fmin: float = 20.0, fmax: float = 16000.0) -> np.ndarray:
    def hz2mel(f):
        return 2595 * np.log10(1 + f / 700.0)

    def mel2hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    pts = mel2hz(np.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2))
    f = np.fft.rfftfreq(n_fft, 1 / SR)
    fb = np.zeros((n_mels, f.size), np.float32)
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((f - lo) / (c - lo), (hi - f) / (hi - c)), 0, None)
    return fb


_FB = _mel_fb()
_WIN = np.hanning(1024).astype(np.float32)


def logmel_stats(x: np.ndarray, n_fft: int = 1024) -> np.ndarray:
    """(128,) float32: per-band mean and std over time of a 64-band log-mel spectrogram
    (non-overlapping 1024-sample Hann frames); a cheap summary used for the shipped-feature stand-ins."""
    x = np.asarray(x, np.float32)
    k = max(1, x.size // n_fft)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = x[: k * n_fft].reshape(k, n_fft) * _WIN
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    lm = np.log(power @ _FB.T + 1e-10)
    return np.concatenate([lm.mean(0), lm.std(0)]).astype(np.float32)
