"""The Gaussian Parzen-window log-likelihood of Goodfellow et al. (2014), Table 1.

A kernel density with one isotropic Gaussian of width sigma on each of N generator
samples mu_i (real-valued pixels in [0, 1], D of them):

  log p(x) = logsumexp_i(-|x - mu_i|^2 / (2 sigma^2)) - log N - D log(sigma sqrt(2 pi)).

sigma is chosen from logspace(-1, 0, 10) by the mean log-likelihood of validation images
(1,000 from train[50000:60000] on MNIST); the score is the mean over the whole test set
+- its standard error (std / sqrt(M), as the paper's code). Squared distances come from
|x|^2 + |mu|^2 - 2 x.mu, one matrix product per chunk of data and of samples; the
logsumexp over samples runs chunk by chunk, so memory is that of one chunk pair.

Not comparable to a likelihood: this is a kernel density of a sampler's output, whose value
depends on sigma and the number of samples (Theis et al. 2016 show it can rank models in
any order); it is the protocol of the GAN papers, not another family's log p(x).
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_SIGMAS = tuple(np.logspace(-1.0, 0.0, 10).tolist())


@dataclasses.dataclass(frozen=True)
class ParzenResult:
    mean: float  # mean test log-likelihood (nats)
    stderr: float  # its standard error
    sigma: float  # the kernel width chosen on validation data
    validation_means: tuple[float, ...]  # mean validation log-likelihood per candidate sigma


def _as_points(name: str, images) -> np.ndarray:
    """[N, ...] pixels in [0, 1] -> float32 [N, D], validated."""
    points = np.asarray(images, dtype=np.float32)
    if points.ndim < 2 or len(points) == 0:
        raise ValueError(f"{name} must be a non-empty array [N, ...], got shape {points.shape}")
    points = points.reshape(len(points), -1)
    if not np.all(np.isfinite(points)) or points.min() < 0.0 or points.max() > 1.0:
        raise ValueError(
            f"{name} must hold real-valued pixels in [0, 1] (divide uint8 images by 255)"
        )
    return points


def _pad_rows(points: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows padded to a multiple of `chunk`, and the mask of real rows."""
    padded = -(-len(points) // chunk) * chunk
    valid = np.arange(padded) < len(points)
    return np.concatenate(
        [points, np.zeros((padded - len(points), points.shape[1]), points.dtype)]
    ), valid


@functools.partial(jax.jit, static_argnames=("chunk",))
def _log_sum_kernels(samples, sample_valid, x, sigmas, chunk: int):
    """logsumexp_i -|x - mu_i|^2 / (2 sigma^2) for every x row and sigma: [M, S].

    samples [N, D] and x [M, D] have row counts that are multiples of `chunk`.
    """
    sample_chunks = (samples.reshape(-1, chunk, samples.shape[1]), sample_valid.reshape(-1, chunk))
    inverse_two_var = 1.0 / (2.0 * sigmas**2)

    def for_data_chunk(x_chunk):
        x_sq = jnp.sum(x_chunk**2, axis=-1)

        def add_samples(running, chunk_inputs):
            mu, valid = chunk_inputs
            sq = x_sq[:, None] + jnp.sum(mu**2, axis=-1)[None] - 2.0 * x_chunk @ mu.T
            exponents = -jnp.maximum(sq, 0.0)[..., None] * inverse_two_var  # [c, n, S]
            exponents = jnp.where(valid[None, :, None], exponents, -jnp.inf)
            return jnp.logaddexp(running, jax.nn.logsumexp(exponents, axis=1)), None

        start = jnp.full((x_chunk.shape[0], sigmas.shape[0]), -jnp.inf, x_chunk.dtype)
        return jax.lax.scan(add_samples, start, sample_chunks)[0]

    per_chunk = jax.lax.map(for_data_chunk, x.reshape(-1, chunk, x.shape[1]))
    return per_chunk.reshape(-1, sigmas.shape[0])


def parzen_log_likelihoods(samples, x, sigmas, chunk: int = 1000) -> np.ndarray:
    """log p(x) under the Parzen window on `samples`, for each sigma: [M, S] float64 (the
    window's density, not the sampling model's likelihood).

    samples: [N, ...] and x: [M, ...] pixels in [0, 1]; sigmas: [S] positive widths.
    """
    mu, points = _as_points("samples", samples), _as_points("x", x)
    if mu.shape[1] != points.shape[1]:
        raise ValueError(
            f"samples have {mu.shape[1]} pixels per example but x has {points.shape[1]}"
        )
    sigmas = np.atleast_1d(np.asarray(sigmas, np.float32))
    if sigmas.ndim != 1 or np.any(~(sigmas > 0)):
        raise ValueError(f"sigmas must be positive widths, got {sigmas}")
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    chunk = min(chunk, max(len(mu), len(points)))
    mu, mu_valid = _pad_rows(mu, chunk)
    padded_x, _ = _pad_rows(points, chunk)
    log_sums = np.asarray(_log_sum_kernels(mu, mu_valid, padded_x, jnp.asarray(sigmas), chunk))[
        : len(points)
    ]
    normaliser = math.log(int(mu_valid.sum())) + points.shape[1] * np.log(
        np.float64(sigmas) * math.sqrt(2 * math.pi)
    )
    return np.float64(log_sums) - normaliser


def parzen_score(
    samples, validation, test, sigmas=DEFAULT_SIGMAS, chunk: int = 1000
) -> ParzenResult:
    """Goodfellow et al.'s protocol: sigma by mean validation log-likelihood, then the test
    mean +- s.e."""
    validation_means = parzen_log_likelihoods(samples, validation, sigmas, chunk).mean(0)
    sigma = float(np.asarray(sigmas)[int(np.argmax(validation_means))])
    test_ll = parzen_log_likelihoods(samples, test, [sigma], chunk)[:, 0]
    return ParzenResult(
        mean=float(test_ll.mean()),
        stderr=float(test_ll.std() / math.sqrt(len(test_ll))),
        sigma=sigma,
        validation_means=tuple(float(v) for v in validation_means),
    )
