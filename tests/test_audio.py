"""Speech front end: MFCCs against an independent float64 NumPy computation of the textbook
definition, padding, the FSDD tarball reader (synthetic and real) and bad input."""

import io
import tarfile

import numpy as np
import pytest
import scipy.fft
from scipy.io import wavfile

from genjax_lab.data import audio
from tests.helpers import shared_data


def _reference_mfcc(wave: np.ndarray, sr: int = 8000) -> np.ndarray:
    """float64, one utterance, written from the definitions with loops: [T, 39]."""
    x = wave.astype(np.float64) / 32768.0
    y = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    frame, step, nfft, filters = 200, 80, 256, 26
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(frame) / (frame - 1))
    top = 2595.0 * np.log10(1.0 + (sr / 2) / 700.0)
    edges = [700.0 * (10 ** (top * i / (filters + 1) / 2595.0) - 1.0) for i in range(filters + 2)]
    bin_hz = np.arange(nfft // 2 + 1) * sr / nfft
    num = 1 + (len(y) - frame) // step
    ceps = np.zeros((num, 13))
    for t in range(num):
        power = np.abs(np.fft.rfft(y[t * step : t * step + frame] * window, nfft)) ** 2 / nfft
        energies = np.zeros(filters)
        for j in range(filters):
            lo, c, hi = edges[j], edges[j + 1], edges[j + 2]
            for k, f in enumerate(bin_hz):
                if lo < f <= c:
                    energies[j] += power[k] * (f - lo) / (c - lo)
                elif c < f < hi:
                    energies[j] += power[k] * (hi - f) / (hi - c)
        ceps[t] = scipy.fft.dct(np.log(np.maximum(energies, 1e-10)), type=2, norm="ortho")[:13]

    def deltas(c):
        padded = np.concatenate([c[:1], c[:1], c, c[-1:], c[-1:]])
        return np.array(
            [
                (padded[t + 3] - padded[t + 1] + 2 * (padded[t + 4] - padded[t])) / 10.0
                for t in range(len(c))
            ]
        )

    d = deltas(ceps)
    feats = np.concatenate([ceps, d, deltas(d)], axis=1)
    return feats - feats.mean(axis=0)


def _waves(rng, lengths):
    out = []
    for n in lengths:
        t = np.arange(n) / 8000.0
        chirp = np.sin(2 * np.pi * (300 + 1500 * t) * t) * (0.3 + 0.2 * np.sin(2 * np.pi * 3 * t))
        out.append(np.round(8000 * chirp + 300 * rng.normal(size=n)).astype(np.int16))
    return out


def test_mfcc_matches_float64_reference_with_padding():
    rng = np.random.default_rng(0)
    lengths = [1200, 2000, 3333]
    waves = _waves(rng, lengths)
    feats, frames = audio.mfcc(waves, chunk=2)  # two chunks: padding rows of the last one
    assert feats.shape == (3, 40, 39) and feats.dtype == np.float32
    np.testing.assert_array_equal(frames, [1 + (n - 200) // 80 for n in lengths])
    for i, wave in enumerate(waves):
        ref = _reference_mfcc(wave)
        assert ref.shape == (frames[i], 39)
        # float32 FFT and log against float64: errors ~1e-4 on values of order 1-10.
        np.testing.assert_allclose(feats[i, : frames[i]], ref, rtol=1e-3, atol=2e-3)
        assert np.all(feats[i, frames[i] :] == 0.0)
        np.testing.assert_allclose(feats[i, : frames[i]].mean(0), 0.0, atol=1e-4)


def test_mel_filters_and_dct():
    bank = audio.mel_filterbank()
    assert bank.shape == (129, 26) and np.all(bank >= 0) and np.all(bank.max(0) > 0.5)
    dct = audio.dct_matrix(26, 26)
    np.testing.assert_allclose(dct.T @ dct, np.eye(26), atol=1e-12)


def _tarball(path, entries):
    with tarfile.open(path, "w:gz") as archive:
        for name, rate, wave in entries:
            buffer = io.BytesIO()
            wavfile.write(buffer, rate, wave)
            data = buffer.getvalue()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_read_fsdd_synthetic_tarball(tmp_path):
    wave = np.zeros(400, np.int16)
    names = [f"recordings/{d}_amy_{i}.wav" for d in (0, 7) for i in (0, 4, 5, 12)]
    _tarball(
        tmp_path / "r.tar.gz",
        [(n, 8000, wave) for n in names] + [("recordings/README.txt", 8000, wave)],
    )
    recordings = audio.read_fsdd(tmp_path / "r.tar.gz")
    assert len(recordings.waveforms) == 8 and set(recordings.speakers) == {"amy"}
    train, test = audio.test_split(recordings)
    assert sorted(test.indices.tolist()) == [0, 0, 4, 4] and sorted(train.indices.tolist()) == [
        5,
        5,
        12,
        12,
    ]
    assert sorted(test.digits.tolist()) == [0, 0, 7, 7]


def test_read_fsdd_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="tarball"):
        audio.read_fsdd(tmp_path / "missing.tar.gz")
    _tarball(tmp_path / "r.tar.gz", [("3_bob_1.wav", 16000, np.zeros(400, np.int16))])
    with pytest.raises(ValueError, match="16000 Hz"):
        audio.read_fsdd(tmp_path / "r.tar.gz")
    _tarball(tmp_path / "e.tar.gz", [("notes.wav", 8000, np.zeros(400, np.int16))])
    with pytest.raises(ValueError, match="holds no"):
        audio.read_fsdd(tmp_path / "e.tar.gz")
    with pytest.raises(ValueError, match=r"waveforms\[1\] has 150 samples"):
        audio.mfcc([np.zeros(400, np.int16), np.zeros(150, np.int16)])


def test_real_fsdd_split():
    recordings = audio.read_fsdd(shared_data("fsdd/recordings.tar.gz"))
    train, test = audio.test_split(recordings)
    assert len(test.digits) == 300 and len(train.digits) == 2700
    assert np.all(np.bincount(test.digits) == 30)
