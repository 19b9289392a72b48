"""Online state estimates of an HMM: fixed-lag smoothing (dynamax's hmm_fixed_lag_smoother).

Streaming data cannot wait for the end of a sequence before it reports states: at step t
the smoother reports p(z_{t-lag} | x_{0:t}), the state lag steps back given everything seen
so far, which improves on the filter p(z_t | x_{0:t}) by the lag's worth of later
observations and is final once x_t has arrived. lag = 0 is the filter; with lag >= T - 1,
the window of estimates at the last step is the full smoother `hmm.posterior`. Every
emission type that `hmm.log_emission` scores works here; the message passing is
`genjax_lab.inference.hmm.hmm_fixed_lag_smoother`.
"""

import functools

import jax
from jax import Array

from genjax_lab.core import checks
from genjax_lab.inference import hmm as hmm_inference
from genjax_lab.models.hmm import model as hmm_model


@functools.partial(jax.jit, static_argnames=("lag", "window"))
def _fixed_lag(params: hmm_model.HMMParams, obs: Array, lengths: Array, lag: int, window: bool):
    return hmm_inference.hmm_fixed_lag_smoother(
        *hmm_model._potentials(params, obs), lag, lengths, window=window
    )


def fixed_lag_smoother(
    params: hmm_model.HMMParams, x, lag: int, *, window: bool = False
) -> hmm_inference.FixedLagResult:
    """Fixed-lag smoothing of validated sequences x (Sequences or obs [B, T(, D)]) under one
    HMM, for any emission type. Returns a FixedLagResult, t indexing the newest observation:
    smoothed_probs [B, T, K] p(z_{t-lag} | x_{0:t}) (zero for t < lag), filtered_probs
    [B, T, K] p(z_t | x_{0:t}), log_likelihood [B], and with window=True window_probs
    [B, T, lag + 1, K], p(z_{t-lag+i} | x_{0:t}) at [b, t, i]; zero on padding. `lag` is an
    int >= 0; each new lag compiles once."""
    if isinstance(params, hmm_model.LabelledHMM):
        raise ValueError(
            "params: fixed-lag smoothing takes one HMM (an HMMParams), not a LabelledHMM; "
            "pass one class's HMM"
        )
    # Checked here: inside the jitted call the inference function's own check does not run.
    checks.check_count("lag", lag, minimum=0)
    obs, lengths = hmm_model._checked(params, x)
    return _fixed_lag(params, obs, lengths, lag, window)
