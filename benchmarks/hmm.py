"""HMM speed against hmmlearn (its 'scaling' implementation) and dynamax (its jitted
`hmm_filter` / e_step + m_step / `hmm_posterior_mode`), same run, same data.

Cases: (a) 64 sequences x T = 1000, K = 8, D = 4 diagonal Gaussian; (b) one sequence,
T = 100,000, same model; (c) Viterbi on the dishonest casino, T = 10,000. Measured: the
forward log-likelihood (emission log-densities included for everyone), one full EM
iteration, Viterbi; and our parallel-scan (associative_scan) versions against our
sequential ones.

Precision: timings run in float32 (as dynamax). Agreement is checked on the same data with
our code run in float64 (`jax.enable_x64`) against hmmlearn's float64: relative difference
must be < 1e-6 (it is ~1e-13). float32 differences are reported too (~1e-7 relative: the
scaled recursion sums per-step log normalisers after the scan, not in a running float).

    .venv/bin/python -m benchmarks.hmm --out runs/bench/hmm.json
"""
import argparse
import functools
import importlib.metadata

import jax
import jax.numpy as jnp
import numpy as np
from hmmlearn import hmm as hmmlearn_hmm

from benchmarks.common import median_seconds, record, report
from genjax_lab.inference import em
from genjax_lab.inference import hmm as inf
from genjax_lab.models import hmm

K, D = 8, 4


def _version(name: str) -> str:
    return importlib.metadata.version(name)


def _gaussian_case(num_sequences: int, num_steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(K))
    a = 0.7 * np.eye(K) + 0.3 * rng.dirichlet(np.ones(K), K)
    means, var = rng.normal(size=(K, D)) * 2.0, rng.uniform(0.5, 1.5, (K, D))
    params = hmm.make_hmm(pi, a, hmm.diag_gaussian_emission(means, var))
    _, obs = hmm.sample(jax.random.key(seed), params, num_steps, num_sequences)
    ref = hmmlearn_hmm.GaussianHMM(K, "diag", init_params="", params="stmc", n_iter=1,
                                   implementation="scaling", covars_prior=0.0, min_covar=1e-12)
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = pi, a, means, var
    return params, obs, ref


def _block(tree):
    return jax.block_until_ready(tree)


def _dynamax_fns(params: hmm.HMMParams, obs):
    """Jitted dynamax forward pass and EM step on the same parameters and data."""
    from dynamax.hidden_markov_model import DiagonalGaussianHMM
    from dynamax.hidden_markov_model import hmm_filter as dyn_filter

    pi, a = hmm.initial_probs(params), hmm.transition_probs(params)

    @jax.jit
    def forward(obs):
        lls = hmm.log_emission(params, obs)
        return jax.vmap(lambda ll: dyn_filter(pi, a, ll).marginal_loglik)(lls)

    model = DiagonalGaussianHMM(K, D)
    dyn_params, props = model.initialize(
        jax.random.key(0), method="prior", emission_means=params.emission.means,
        emission_scale_diags=jnp.exp(params.emission.log_scales),
    )
    dyn_params = dyn_params._replace(
        initial=dyn_params.initial._replace(probs=pi), transitions=dyn_params.transitions._replace(transition_matrix=a)
    )
    m_state = model.initialize_m_step_state(dyn_params, props)

    @jax.jit
    def em_step(p, obs):
        stats, lls = jax.vmap(functools.partial(model.e_step, p))(obs, None)
        new, _ = model.m_step(p, props, stats, m_state)
        return new, lls.sum()

    return forward, lambda: em_step(dyn_params, obs)


def _gaussian_records(label: str, num_sequences: int, num_steps: int, repeats: int) -> list[dict]:
    params, obs, ref = _gaussian_case(num_sequences, num_steps)
    lengths = jnp.full((num_sequences,), num_steps, jnp.int32)
    flat = np.asarray(obs, np.float64).reshape(-1, D)
    ref_lengths = np.full(num_sequences, num_steps)
    dyn_forward, dyn_em = _dynamax_fns(params, obs)
    batch = {"obs": obs, "lengths": lengths}

    ours_fwd = lambda: _block(hmm.sequence_log_likelihood(params, obs, lengths))  # noqa: E731
    ours_par = lambda: _block(hmm.sequence_log_likelihood(params, obs, lengths, parallel=True))  # noqa: E731
    ours_em = lambda: _block(em.em_step(params, batch, em.MAXIMUM_LIKELIHOOD))  # noqa: E731

    # Agreement: float64 ours vs hmmlearn; float32 reported.
    ref_ll = ref.score(flat, ref_lengths)
    ours32 = float(jnp.sum(ours_fwd()))
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        ours64 = float(jnp.sum(hmm.sequence_log_likelihood(p64, jnp.asarray(np.asarray(obs), jnp.float64), lengths)))
    rel64, rel32 = abs(ours64 - ref_ll) / abs(ref_ll), abs(ours32 - ref_ll) / abs(ref_ll)
    assert rel64 < 1e-6, f"{label}: float64 log-likelihood differs from hmmlearn by {rel64:.2e}"
    dyn_rel = abs(float(jnp.sum(dyn_forward(obs))) - ref_ll) / abs(ref_ll)
    agree = {"rel_diff_float64": rel64, "rel_diff_float32": rel32, "dynamax_rel_diff_float32": dyn_rel}

    t_fwd = median_seconds(ours_fwd, repeats)
    t_par = median_seconds(ours_par, repeats)
    t_em = median_seconds(ours_em, repeats)
    t_dyn_fwd = median_seconds(lambda: _block(dyn_forward(obs)), repeats)
    t_dyn_em = median_seconds(lambda: _block(dyn_em()), repeats)
    t_ref_fwd = median_seconds(lambda: ref.score(flat, ref_lengths), repeats)

    def hmmlearn_em():
        m = hmmlearn_hmm.GaussianHMM(K, "diag", init_params="", params="stmc", n_iter=1, tol=-np.inf,
                                     implementation="scaling", covars_prior=0.0, min_covar=1e-12)
        m.startprob_, m.transmat_, m.means_, m.covars_ = ref.startprob_, ref.transmat_, ref.means_, ref._covars_
        m.fit(flat, ref_lengths)

    t_ref_em = median_seconds(hmmlearn_em, repeats)
    hl, dx = ("hmmlearn", _version("hmmlearn")), ("dynamax", _version("dynamax"))
    return [
        record(f"{label} forward log-lik", t_fwd, *hl, t_ref_fwd, **agree),
        record(f"{label} forward log-lik", t_fwd, *dx, t_dyn_fwd, **agree),
        record(f"{label} EM iteration", t_em, *hl, t_ref_em),
        record(f"{label} EM iteration", t_em, *dx, t_dyn_em),
        record(f"{label} forward parallel vs sequential", t_par, "ours sequential", "", t_fwd),
    ]


def _casino_records(num_steps: int, repeats: int) -> list[dict]:
    from dynamax.hidden_markov_model import hmm_posterior_mode

    a = np.array([[0.95, 0.05], [0.10, 0.90]])
    b = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])
    params = hmm.make_hmm([0.5, 0.5], a, hmm.categorical_emission(b))
    _, obs = hmm.sample(jax.random.key(1), params, num_steps, 1)
    lengths = jnp.array([num_steps], jnp.int32)
    ref = hmmlearn_hmm.CategoricalHMM(2, init_params="", implementation="scaling")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = np.array([0.5, 0.5]), a, b
    flat = np.asarray(obs).reshape(-1, 1)

    seq = lambda: _block(hmm._viterbi(params, obs, lengths, False))  # noqa: E731
    par = lambda: _block(hmm._viterbi(params, obs, lengths, True))  # noqa: E731
    pi_, a_ = hmm.initial_probs(params), hmm.transition_probs(params)
    dyn = jax.jit(lambda o: hmm_posterior_mode(pi_, a_, hmm.log_emission(params, o)))
    ref_lp, ref_path = ref.decode(flat, algorithm="viterbi")
    ours = seq()
    assert np.array_equal(np.asarray(ours.states[0]), ref_path), "casino Viterbi path differs from hmmlearn"
    assert np.array_equal(np.asarray(dyn(obs[0])), ref_path)
    t_seq, t_par = median_seconds(seq, repeats), median_seconds(par, repeats)
    t_dyn = median_seconds(lambda: _block(dyn(obs[0])), repeats)
    t_ref = median_seconds(lambda: ref.decode(flat, algorithm="viterbi"), repeats)
    rel = abs(float(ours.log_prob[0]) - ref_lp) / abs(ref_lp)
    return [
        record("(c) casino Viterbi T=10k", t_seq, "hmmlearn", _version("hmmlearn"), t_ref, rel_diff_float32=rel),
        record("(c) casino Viterbi T=10k", t_seq, "dynamax", _version("dynamax"), t_dyn),
        record("(c) casino Viterbi parallel vs sequential", t_par, "ours sequential", "", t_seq),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the JSON records here")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    records = _gaussian_records("(a) 64 x T=1000 K=8 D=4", 64, 1000, args.repeats)
    records += _gaussian_records("(b) 1 x T=100k K=8 D=4", 1, 100_000, args.repeats)
    records += _casino_records(10_000, args.repeats)
    report(records, args.out)
    print(f"devices: {jax.devices()}; jax {jax.__version__}; timings provisional (shared machine)")


if __name__ == "__main__":
    main()
