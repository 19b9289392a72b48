"""The parts the project writes itself, held against the library that does the same job:
the MFCC front end against librosa, the text pipeline's counts against scikit-learn's
CountVectorizer, the Frechet distance against scipy.linalg.sqrtm, and the Parzen estimator
against a brute-force float64 NumPy sum (docs/ecosystem.md lists them)."""

import math

import librosa
import numpy as np
import pytest
import scipy.linalg
from sklearn.feature_extraction.text import CountVectorizer

from genjax_lab.data import audio, text
from genjax_lab.eval import frechet, parzen
from tests.helpers import shared_data


# ----------------------------------------------------------------------------- MFCC
def _librosa_mfcc(wave: np.ndarray, config: audio.MfccConfig) -> np.ndarray:
    """Our front end's settings in librosa's terms, float64: [T, 39]."""
    x = wave / 32768.0
    # zi = 0: the sample before the first is silence, as ours (librosa's default extrapolates).
    y = librosa.effects.preemphasis(x, coef=config.pre_emphasis, zi=np.zeros(1))
    # librosa centres a short window in its FFT frame; padding by half the difference puts
    # frame t's window over samples [t * step, t * step + frame_length), as ours.
    pad = (config.fft_length - config.frame_length) // 2
    spectrum = librosa.stft(
        np.pad(y, pad),
        n_fft=config.fft_length,
        hop_length=config.frame_step,
        win_length=config.frame_length,
        window=np.hamming(config.frame_length),
        center=False,
    )
    power = np.abs(spectrum) ** 2 / config.fft_length
    bank = librosa.filters.mel(
        sr=config.sample_rate,
        n_fft=config.fft_length,
        n_mels=config.num_filters,
        fmin=0.0,
        fmax=config.sample_rate / 2,
        htk=True,
        norm=None,
        dtype=np.float64,
    )
    log_mel = np.log(np.maximum(bank @ power, 1e-10))
    ceps = librosa.feature.mfcc(S=log_mel, n_mfcc=config.num_coefficients, dct_type=2, norm="ortho")
    # Regression deltas are the first derivative of a local linear fit (Savitzky-Golay);
    # 'nearest' repeats the edge frames. Delta-deltas are deltas of the deltas, as ours.
    width = 2 * config.delta_width + 1
    delta = librosa.feature.delta(ceps, width=width, order=1, mode="nearest")
    delta2 = librosa.feature.delta(delta, width=width, order=1, mode="nearest")
    feats = np.concatenate([ceps, delta, delta2]).T
    return feats - feats.mean(0)


def test_mel_filterbank_equals_librosa_htk():
    config = audio.MfccConfig()
    bank = librosa.filters.mel(
        sr=config.sample_rate,
        n_fft=config.fft_length,
        n_mels=config.num_filters,
        fmin=0.0,
        fmax=config.sample_rate / 2,
        htk=True,
        norm=None,
        dtype=np.float64,
    )
    np.testing.assert_allclose(audio.mel_filterbank(config), bank.T, rtol=0, atol=1e-12)


def test_mfcc_equals_librosa():
    rng = np.random.default_rng(0)
    waves = []
    for n in (1200, 2000, 3333):  # a chirp with tremolo and noise, as 16-bit samples
        t = np.arange(n) / audio.SAMPLE_RATE
        chirp = np.sin(2 * np.pi * (300 + 1500 * t) * t) * (0.3 + 0.2 * np.sin(2 * np.pi * 3 * t))
        waves.append(np.round(8000 * chirp + 300 * rng.normal(size=n)).astype(np.int16))
    feats, frames = audio.mfcc(waves)
    for i, wave in enumerate(waves):
        expected = _librosa_mfcc(wave, audio.MfccConfig())
        assert expected.shape == (frames[i], 39)
        # Ours runs in float32: 1.1e-5 at most here, on features up to 6.4.
        np.testing.assert_allclose(feats[i, : frames[i]], expected, rtol=0, atol=3e-5)


# ----------------------------------------------------------------------------- text
def _countvectorizer(documents: list[str], **options) -> CountVectorizer:
    # The same rule as text.tokenize: lower-cased runs of at least two letters (a word
    # character that is neither digit nor underscore), then the same stop words dropped.
    return CountVectorizer(
        lowercase=True,
        token_pattern=r"[^\W\d_]{2,}",
        stop_words=sorted(text.ENGLISH_STOP_WORDS),
        **options,
    ).fit(documents)


@pytest.mark.parametrize("max_doc_fraction", [1.0, 0.05])
def test_counts_equal_countvectorizer(max_doc_fraction):
    documents = text.read_corpus(shared_data("text/lee_background.cor"))[:150]
    documents += [
        "Ünïcode Wörter, snake_case and CamelCase; x2 a1bc 42nd it's co-op",
        "the of and",
        "    ",
        "Ça été l'été ÉTÉ",
    ]
    tokens = [text.tokenize(d) for d in documents]
    vocab = text.build_vocabulary(tokens, max_doc_fraction=max_doc_fraction)
    ours = text.to_dense(text.bag_of_words(tokens, vocab), len(vocab))
    reference = _countvectorizer(documents, max_df=max_doc_fraction)
    assert set(vocab.words) == set(reference.vocabulary_)
    columns = [reference.vocabulary_[w] for w in vocab.words]
    theirs = reference.transform(documents).toarray()[:, columns]
    np.testing.assert_array_equal(ours, theirs)


# ----------------------------------------------------------------------------- Frechet
def _scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mean1, mean2 = a.mean(0), b.mean(0)
    cov1, cov2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2 * root))


@pytest.mark.parametrize("dim", [12, 40])
def test_frechet_distance_equals_scipy_sqrtm(dim):
    rng = np.random.default_rng(dim)
    # Non-commuting covariances with scales from 0.1 to 10.
    a = rng.normal(size=(500, dim)) @ (rng.normal(size=(dim, dim)) * np.logspace(-1, 1, dim))
    b = rng.normal(0.3, 1.5, size=(400, dim)) @ rng.normal(size=(dim, dim))
    assert frechet.frechet_distance_of_features(a, b) == pytest.approx(
        _scipy_frechet(a, b), rel=1e-8
    )
    # Condition numbers near 1e8: the singular values of R2 R1 leave about 1e-15 of the traces
    # at zero (scipy's sqrtm and the eigenvalues of R1 S2 R1 left 1e-9, 2.6e-9 on some LAPACK
    # builds, where this test failed with 1e-9).
    scale = 2 * np.trace(np.cov(a, rowvar=False))
    assert frechet.frechet_distance_of_features(a, a) == pytest.approx(0.0, abs=1e-13 * scale)


# ----------------------------------------------------------------------------- Parzen
def brute_force_parzen(samples, x, sigma: float) -> np.ndarray:
    """log p(x) of the Parzen window, float64, every pair's difference (no |x|^2 + |mu|^2
    - 2 x.mu expansion, no chunks): [M].

    Not scikit-learn's KernelDensity: at 64 dimensions its log-densities are off by 63 nats
    (sigma 0.2) and 340 nats (sigma 0.1) on uniform pixels, where this sum is exact; it
    agrees only where the densities are not small (sigma 0.5)."""
    mu = np.float64(samples).reshape(len(samples), -1)
    x = np.float64(x).reshape(len(x), -1)
    sq = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
    return (
        np.logaddexp.reduce(-sq / (2 * sigma**2), axis=1)
        - math.log(len(mu))
        - mu.shape[1] * math.log(sigma * math.sqrt(2 * math.pi))
    )


def test_parzen_equals_brute_force_float64_at_64_dimensions():
    rng = np.random.default_rng(0)
    # 8 x 8 pixels; counts that are not multiples of the chunk, so padding must weigh nothing.
    samples, x = rng.random((203, 8, 8, 1)), rng.random((57, 8, 8, 1))
    sigmas = np.array([0.1, 0.2, 0.5])
    got = parzen.parzen_log_likelihoods(np.float32(samples), x, sigmas, chunk=16)
    expected = np.stack([brute_force_parzen(samples, x, s) for s in sigmas], axis=1)
    # float32 distances: |x - mu|^2 / (2 sigma^2) of order 500 at sigma 0.1, to ~1e-5 relative.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=5e-3)
