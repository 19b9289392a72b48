"""Speech data: the Free Spoken Digit Dataset read offline from its tarball, and MFCC features.

FSDD (github.com/Jakobovski/free-spoken-digit-dataset): mono 8 kHz 16-bit wavs named
`{digit}_{speaker}_{index}.wav`, 50 recordings of each digit per speaker; the customary
test split is index 0-4 of every (speaker, digit).

Features, per utterance (the usual speech front end):
  pre-emphasis y[n] = x[n] - 0.97 x[n-1]; frames of 25 ms every 10 ms (Hamming window);
  power spectrum |FFT_256|^2 / 256; 26 triangular mel filters (HTK mel scale,
  2595 log10(1 + f / 700)) between 0 Hz and the Nyquist frequency; natural log (floored at
  1e-10); orthonormal DCT-II, keeping coefficients 0..12; deltas and delta-deltas by the
  regression d_t = sum_{n=1..2} n (c_{t+n} - c_{t-n}) / (2 sum n^2) with the first and last
  frames repeated at the edges; finally the utterance's mean over its frames is subtracted
  from every one of the 39 features. All of it runs jitted and batched in JAX on padded
  waveforms; padding frames come out zero.
"""

import functools
import io
import pathlib
import re
import tarfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from scipy.io import wavfile

SAMPLE_RATE = 8000
_NAME = re.compile(r"(?:.*/)?(\d)_([A-Za-z]+)_(\d+)\.wav$")


class Recordings(NamedTuple):
    """waveforms: list of [S_i] int16 arrays; digits, indices: [N] int; speakers: [N] str."""

    waveforms: list
    digits: np.ndarray
    speakers: np.ndarray
    indices: np.ndarray


class MfccConfig(NamedTuple):
    """Front-end settings (module docstring); the defaults are the ones used throughout."""

    sample_rate: int = SAMPLE_RATE
    frame_length: int = 200
    frame_step: int = 80
    fft_length: int = 256
    num_filters: int = 26
    num_coefficients: int = 13
    pre_emphasis: float = 0.97
    delta_width: int = 2


def read_wav(source: "str | pathlib.Path | io.BytesIO", name: str | None = None) -> np.ndarray:
    """One recording as FSDD has them, [S] int16: mono, 8 kHz, 16-bit. `source` is a path or
    a file object; `name` (default: the path) is what an error names. Raises ValueError for
    a file that is not such a wav."""
    name = str(source) if name is None else name
    try:
        rate, wave = wavfile.read(source)
    except ValueError as error:  # scipy's word for a file that is not a RIFF/WAVE
        raise ValueError(f"{name}: not a wav file ({error})") from error
    if rate != SAMPLE_RATE or wave.ndim != 1 or wave.dtype != np.int16:
        raise ValueError(
            f"{name} is {rate} Hz {wave.dtype} with shape {wave.shape}, expected mono "
            f"{SAMPLE_RATE} Hz int16 (the features are defined at that rate)"
        )
    return wave


def read_fsdd(tarball: str | pathlib.Path) -> Recordings:
    """Every `{digit}_{speaker}_{index}.wav` in the tarball (sorted by name), validated to be
    mono 8 kHz 16-bit. Raises FileNotFoundError if `tarball` is missing, ValueError if it
    holds no such wav or a wav of another format."""
    tarball = pathlib.Path(tarball)
    if not tarball.is_file():
        raise FileNotFoundError(f"tarball: no FSDD recordings tarball at {tarball}")
    rows = []
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            match = _NAME.match(member.name)
            if not member.isfile() or match is None:
                continue
            data = io.BytesIO(archive.extractfile(member).read())
            wave = read_wav(data, f"tarball: {member.name}")
            rows.append((member.name, int(match[1]), match[2], int(match[3]), wave))
    if not rows:
        raise ValueError(f"tarball: {tarball} holds no '{{digit}}_{{speaker}}_{{index}}.wav' files")
    rows.sort(key=lambda r: r[0])
    return Recordings(
        waveforms=[r[4] for r in rows],
        digits=np.array([r[1] for r in rows]),
        speakers=np.array([r[2] for r in rows]),
        indices=np.array([r[3] for r in rows]),
    )


def select(recordings: Recordings, keep: np.ndarray) -> Recordings:
    """The recordings where the boolean `keep` [N] is true."""
    keep = np.asarray(keep, bool)
    return Recordings(
        [w for w, k in zip(recordings.waveforms, keep) if k],
        recordings.digits[keep],
        recordings.speakers[keep],
        recordings.indices[keep],
    )


def test_split(recordings: Recordings, num_test_indices: int = 5) -> tuple[Recordings, Recordings]:
    """(train, test): test = recordings with index < num_test_indices (the customary split)."""
    is_test = recordings.indices < num_test_indices
    return select(recordings, ~is_test), select(recordings, is_test)


# ------------------------------------------------------------------------------- MFCC


def mel_filterbank(config: MfccConfig = MfccConfig()) -> np.ndarray:
    """[fft_length // 2 + 1, num_filters] triangular filters, equally spaced in mel."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    edges = hz(np.linspace(0.0, mel(config.sample_rate / 2), config.num_filters + 2))
    freqs = np.arange(config.fft_length // 2 + 1) * config.sample_rate / config.fft_length
    lo, centre, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lo) / (centre - lo)
    falling = (hi - freqs[:, None]) / (hi - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def dct_matrix(num_filters: int, num_coefficients: int) -> np.ndarray:
    """[num_filters, num_coefficients] orthonormal DCT-II: c = log_mel @ matrix."""
    n = np.arange(num_filters)[:, None]
    k = np.arange(num_coefficients)[None, :]
    matrix = np.sqrt(2.0 / num_filters) * np.cos(np.pi * k * (2 * n + 1) / (2 * num_filters))
    matrix[:, 0] /= np.sqrt(2.0)
    return matrix


def num_frames(num_samples, config: MfccConfig = MfccConfig()):
    """Frames of a waveform of `num_samples` (>= frame_length): 1 + (S - frame) // step."""
    return 1 + (np.asarray(num_samples) - config.frame_length) // config.frame_step


def _deltas(feats: Array, lengths: Array, width: int) -> Array:
    """Regression deltas over time of feats [B, T, F], edges repeated per utterance."""
    t = jnp.arange(feats.shape[1])
    total = 0.0
    for n in range(1, width + 1):  # width is 2: a static, tiny loop over offsets
        ahead = jnp.minimum(t[None, :] + n, lengths[:, None] - 1)
        behind = jnp.maximum(t[None, :] - n, 0)
        total = total + n * (
            jnp.take_along_axis(feats, ahead[..., None], axis=1)
            - jnp.take_along_axis(feats, behind[..., None], axis=1)
        )
    return total / (2.0 * sum(n * n for n in range(1, width + 1)))


@functools.partial(jax.jit, static_argnames=("config", "max_frames"))
def _mfcc_batch(waves: Array, lengths: Array, config: MfccConfig, max_frames: int) -> Array:
    """waves [B, S] float32 (zero padded), lengths [B] frames -> [B, max_frames, 39]."""
    emphasised = jnp.concatenate(
        [waves[:, :1], waves[:, 1:] - config.pre_emphasis * waves[:, :-1]], axis=1
    )
    index = (
        jnp.arange(max_frames)[:, None] * config.frame_step
        + jnp.arange(config.frame_length)[None, :]
    )
    frames = emphasised[:, index] * jnp.asarray(np.hamming(config.frame_length), jnp.float32)
    power = jnp.abs(jnp.fft.rfft(frames, n=config.fft_length)) ** 2 / config.fft_length
    log_mel = jnp.log(jnp.maximum(power @ jnp.asarray(mel_filterbank(config), jnp.float32), 1e-10))
    ceps = log_mel @ jnp.asarray(
        dct_matrix(config.num_filters, config.num_coefficients), jnp.float32
    )
    delta = _deltas(ceps, lengths, config.delta_width)
    feats = jnp.concatenate([ceps, delta, _deltas(delta, lengths, config.delta_width)], axis=-1)
    valid = (jnp.arange(max_frames)[None, :] < lengths[:, None])[..., None]
    mean = jnp.sum(jnp.where(valid, feats, 0.0), axis=1, keepdims=True) / lengths[:, None, None]
    return jnp.where(valid, feats - mean, 0.0)


def mfcc(
    waveforms: list, config: MfccConfig = MfccConfig(), chunk: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """MFCC + deltas + delta-deltas, mean-normalised per utterance (module docstring).

    waveforms: list of [S_i] int16 (scaled by 1/32768) or float arrays, S_i >= frame_length.
    Returns (features [B, T, 3 * num_coefficients] float32, zero after each utterance's
    end, T = the longest utterance's frame count; lengths [B] int32 frames). Runs in chunks
    of `chunk` utterances, each padded to the same shape so one compilation serves all."""
    if len(waveforms) == 0:
        raise ValueError("waveforms must hold at least one waveform")
    samples = np.array([np.shape(w)[0] for w in waveforms])
    if any(np.ndim(w) != 1 for w in waveforms):
        raise ValueError("waveforms must be 1-D (mono) arrays")
    if samples.min() < config.frame_length:
        short = int(np.argmin(samples))
        raise ValueError(
            f"waveforms[{short}] has {samples[short]} samples, fewer than one frame "
            f"({config.frame_length})"
        )
    lengths = num_frames(samples, config).astype(np.int32)
    max_frames = int(lengths.max())
    width = int(samples.max())
    out = []
    for start in range(0, len(waveforms), chunk):
        part = waveforms[start : start + chunk]
        waves = np.zeros((chunk, width), np.float32)
        for i, w in enumerate(part):
            w = np.asarray(w)
            waves[i, : len(w)] = w / 32768.0 if w.dtype == np.int16 else w
        part_lengths = np.ones(chunk, np.int32)
        part_lengths[: len(part)] = lengths[start : start + chunk]
        out.append(np.asarray(_mfcc_batch(waves, part_lengths, config, max_frames))[: len(part)])
    return np.concatenate(out), lengths
