"""HMM speed against hmmlearn (its 'scaling' implementation) and dynamax (its jitted
`hmm_filter` / e_step + m_step / `hmm_posterior_mode`), same run, same data.

Cases: (a) 64 sequences x T = 1000, K = 8, D = 4 diagonal Gaussian; (b) one sequence,
T = 100,000, same model; (c) Viterbi on the dishonest casino, T = 10,000; (e) as (a) with a
left-to-right chain (Bakis, jumps of 1 or 2: structural zeros, so our recursions run in log
space, genjax_lab.inference.hmm's docstring). Measured: the forward log-likelihood
(emission log-densities included for everyone), one full EM iteration, Viterbi; and our
parallel-scan (associative_scan) versions against our sequential ones.

(d) FSDD spoken digits, same run: ten left-to-right GMM-HMMs (8 states, 4 diagonal
components; 13 MFCC + deltas + delta-deltas, per-utterance mean normalisation, from
genjax_lab.data.audio) trained by experiments/hmm.py's vmapped EM and by hmmlearn's GMMHMM
(scaling implementation, one model per digit in a loop) from the same start parameters for
the same number of EM iterations; test accuracy of both, training time (ours: the compiled
EM, compilation reported separately). Trained once each (minutes for hmmlearn), not
repeated; `--skip_fsdd` leaves it out, `--fsdd_path` points at the tarball.

Precision: timings run in float32 (as dynamax). Agreement is checked on the same data with
our code run in float64 (`jax.enable_x64`) against hmmlearn's float64: relative difference
must be < 1e-6 (it is ~1e-13). float32 differences are reported too (~1e-7 relative: the
recursions sum per-step log normalisers after the scan, not in a running float).

    .venv/bin/python -m benchmarks.hmm --out runs/bench/hmm.json [--skip_fsdd] [--fsdd_iters 10]
"""

import argparse
import functools
import importlib.metadata
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from hmmlearn import hmm as hmmlearn_hmm

from benchmarks.common import record, report
from genjax_lab.models import hmm

K, D = 8, 4


def _version(name: str) -> str:
    return importlib.metadata.version(name)


def _gaussian_case(num_sequences: int, num_steps: int, seed: int = 0, left_to_right: bool = False):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(K))
    a = 0.7 * np.eye(K) + 0.3 * rng.dirichlet(np.ones(K), K)
    if left_to_right:
        pi, a = hmm.left_to_right_transitions(K, self_prob=0.9, max_jump=2)
    means, var = rng.normal(size=(K, D)) * 2.0, rng.uniform(0.5, 1.5, (K, D))
    params = hmm.make_hmm(pi, a, hmm.diag_gaussian_emission(means, var))
    _, obs = hmm.sample_with_states(jax.random.key(seed), params, num_sequences, length=num_steps)
    ref = hmmlearn_hmm.GaussianHMM(
        K,
        "diag",
        init_params="",
        params="stmc",
        n_iter=1,
        implementation="scaling",
        covars_prior=0.0,
        min_covar=1e-12,
    )
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = pi, a, means, var
    return params, obs, ref


def _interleaved_seconds(fns: dict, repeats: int) -> dict:
    """Median wall time of each fn over `repeats` rounds, one call of every fn per round
    (after one untimed call each): on a shared machine a burst of load then slows every
    contender alike instead of whichever happened to be running."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


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
        jax.random.key(0),
        method="prior",
        emission_means=params.emission.means,
        emission_scale_diags=jnp.exp(params.emission.log_scales),
    )
    dyn_params = dyn_params._replace(
        initial=dyn_params.initial._replace(probs=pi),
        transitions=dyn_params.transitions._replace(transition_matrix=a),
    )
    m_state = model.initialize_m_step_state(dyn_params, props)

    @jax.jit
    def em_step(p, obs):
        stats, lls = jax.vmap(functools.partial(model.e_step, p))(obs, None)
        new, _ = model.m_step(p, props, stats, m_state)
        return new, lls.sum()

    return forward, lambda: em_step(dyn_params, obs)


def _gaussian_records(
    label: str, num_sequences: int, num_steps: int, repeats: int, left_to_right: bool = False
) -> list[dict]:
    params, obs, ref = _gaussian_case(num_sequences, num_steps, left_to_right=left_to_right)
    lengths = jnp.full((num_sequences,), num_steps, jnp.int32)
    flat = np.asarray(obs, np.float64).reshape(-1, D)
    ref_lengths = np.full(num_sequences, num_steps)
    dyn_forward, dyn_em = _dynamax_fns(params, obs)
    batch = {"obs": obs, "lengths": lengths}

    ours_fwd = lambda: _block(hmm.log_prob_unchecked(params, obs, lengths))
    ours_par = lambda: _block(hmm.log_prob_unchecked(params, obs, lengths, parallel=True))
    ours_em = lambda: _block(hmm.em_step(params, batch, hmm.MAXIMUM_LIKELIHOOD))

    # Agreement: float64 ours vs hmmlearn; float32 reported.
    ref_ll = ref.score(flat, ref_lengths)
    ours32 = float(jnp.sum(ours_fwd()))
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        ours64 = float(
            jnp.sum(hmm.log_prob_unchecked(p64, jnp.asarray(np.asarray(obs), jnp.float64), lengths))
        )
    rel64, rel32 = abs(ours64 - ref_ll) / abs(ref_ll), abs(ours32 - ref_ll) / abs(ref_ll)
    assert rel64 < 1e-6, f"{label}: float64 log-likelihood differs from hmmlearn by {rel64:.2e}"
    dyn_rel = abs(float(jnp.sum(dyn_forward(obs))) - ref_ll) / abs(ref_ll)
    agree = {
        "rel_diff_float64": rel64,
        "rel_diff_float32": rel32,
        "dynamax_rel_diff_float32": dyn_rel,
    }

    def hmmlearn_em():
        m = hmmlearn_hmm.GaussianHMM(
            K,
            "diag",
            init_params="",
            params="stmc",
            n_iter=1,
            tol=-np.inf,
            implementation="scaling",
            covars_prior=0.0,
            min_covar=1e-12,
        )
        m.startprob_, m.transmat_, m.means_, m.covars_ = (
            ref.startprob_,
            ref.transmat_,
            ref.means_,
            ref._covars_,
        )
        m.fit(flat, ref_lengths)

    t = _interleaved_seconds(
        {
            "fwd": ours_fwd,
            "par": ours_par,
            "em": ours_em,
            "dyn_fwd": lambda: _block(dyn_forward(obs)),
            "dyn_em": lambda: _block(dyn_em()),
            "ref_fwd": lambda: ref.score(flat, ref_lengths),
            "ref_em": hmmlearn_em,
        },
        repeats,
    )
    t_fwd, t_par, t_em, t_ref_fwd, t_ref_em = t["fwd"], t["par"], t["em"], t["ref_fwd"], t["ref_em"]
    t_dyn_fwd, t_dyn_em = t["dyn_fwd"], t["dyn_em"]
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
    _, obs = hmm.sample_with_states(jax.random.key(1), params, 1, length=num_steps)
    lengths = jnp.array([num_steps], jnp.int32)
    ref = hmmlearn_hmm.CategoricalHMM(2, init_params="", implementation="scaling")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = np.array([0.5, 0.5]), a, b
    flat = np.asarray(obs).reshape(-1, 1)

    seq = lambda: _block(hmm.model._viterbi(params, obs, lengths, False))
    par = lambda: _block(hmm.model._viterbi(params, obs, lengths, True))
    pi_, a_ = hmm.initial_probs(params), hmm.transition_probs(params)
    dyn = jax.jit(lambda o: hmm_posterior_mode(pi_, a_, hmm.log_emission(params, o)))
    ref_lp, ref_path = ref.decode(flat, algorithm="viterbi")
    ours = seq()
    assert np.array_equal(np.asarray(ours.states[0]), ref_path), (
        "casino Viterbi path differs from hmmlearn"
    )
    assert np.array_equal(np.asarray(dyn(obs[0])), ref_path)
    t = _interleaved_seconds(
        {
            "seq": seq,
            "par": par,
            "dyn": lambda: _block(dyn(obs[0])),
            "ref": lambda: ref.decode(flat, algorithm="viterbi"),
        },
        repeats,
    )
    t_seq, t_par, t_dyn, t_ref = t["seq"], t["par"], t["dyn"], t["ref"]
    rel = abs(float(ours.log_prob[0]) - ref_lp) / abs(ref_lp)
    return [
        record(
            "(c) casino Viterbi T=10k",
            t_seq,
            "hmmlearn",
            _version("hmmlearn"),
            t_ref,
            rel_diff_float32=rel,
        ),
        record("(c) casino Viterbi T=10k", t_seq, "dynamax", _version("dynamax"), t_dyn),
        record("(c) casino Viterbi parallel vs sequential", t_par, "ours sequential", "", t_seq),
    ]


def _hmmlearn_digit_model(start: hmm.HMMParams, num_iters: int):
    """hmmlearn GMMHMM holding our start parameters of one class (so both fits start alike)."""
    e = start.emission
    k, m = e.logits.shape
    model = hmmlearn_hmm.GMMHMM(
        k,
        m,
        covariance_type="diag",
        init_params="",
        params="stmcw",
        n_iter=num_iters,
        tol=-np.inf,
        implementation="scaling",
    )
    model.startprob_ = np.asarray(hmm.initial_probs(start), np.float64)
    model.transmat_ = np.asarray(hmm.transition_probs(start), np.float64)
    model.weights_ = np.asarray(jax.nn.softmax(e.logits, axis=-1), np.float64)
    model.means_ = np.asarray(e.means, np.float64)
    model.covars_ = np.exp(2.0 * np.asarray(e.log_scales, np.float64))
    return model


def _fsdd_records(fsdd_path: str, num_iters: int) -> list[dict]:
    from genjax_lab.core import replication as rep
    from genjax_lab.data import audio

    hx = rep.load_module("experiments/hmm.py")  # a script: its FSDD pipeline pieces
    config = rep.experiment_config("experiments/configs/hmm_fsdd.py", "default")
    config.data.fsdd_path = fsdd_path
    config.num_steps = num_iters
    train, test = hx.load_fsdd(config)
    train_x, train_len = audio.mfcc(train.waveforms)
    test_x, test_len = audio.mfcc(test.waveforms)
    start, chunk = hx.digit_hmms_em(config, train_x, train_len, train.digits)
    t0 = time.perf_counter()
    fit = jax.jit(chunk, static_argnums=1).lower(start, num_iters).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    params, _ = _block(fit(start))
    ours_s = time.perf_counter() - t0
    counts = np.bincount(train.digits, minlength=10)
    clf = hmm.classifier(hmm.make_labelled(params, counts / counts.sum()))
    predicted = np.asarray(clf.predict(hmm.Sequences(test_x, test_len)))
    ours_acc = float(np.mean(predicted == test.digits))

    models, t0 = [], time.perf_counter()
    for c in range(10):
        idx = np.flatnonzero(train.digits == c)
        model = _hmmlearn_digit_model(jax.tree.map(lambda x, c=c: x[c], start), num_iters)
        model.fit(
            np.concatenate([train_x[i, : train_len[i]] for i in idx]).astype(np.float64),
            train_len[idx],
        )
        models.append(model)
    ref_s = time.perf_counter() - t0
    scores = np.array(
        [
            [mod.score(test_x[i, : test_len[i]].astype(np.float64)) for mod in models]
            for i in range(len(test.digits))
        ]
    ) + np.log(counts / counts.sum())
    ref_acc = float(np.mean(scores.argmax(1) == test.digits))
    return [
        record(
            f"(d) FSDD 10 GMM-HMMs, {num_iters} EM iterations",
            ours_s,
            "hmmlearn GMMHMM",
            _version("hmmlearn"),
            ref_s,
            ours_accuracy=ours_acc,
            reference_accuracy=ref_acc,
            ours_compile_s=compile_s,
            num_test=len(test.digits),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the JSON records here")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument(
        "--skip_fsdd", action="store_true", help="leave out the FSDD comparison (d)"
    )
    parser.add_argument(
        "--fsdd_path",
        default=str(
            pathlib.Path(__file__).resolve().parents[2]
            / "shared"
            / "data"
            / "fsdd"
            / "recordings.tar.gz"
        ),
    )
    parser.add_argument(
        "--fsdd_iters", type=int, default=10, help="EM iterations of both FSDD fits"
    )
    args = parser.parse_args()
    records = _gaussian_records("(a) 64 x T=1000 K=8 D=4", 64, 1000, args.repeats)
    records += _gaussian_records("(b) 1 x T=100k K=8 D=4", 1, 100_000, args.repeats)
    records += _casino_records(10_000, args.repeats)
    records += _gaussian_records(
        "(e) left-to-right 64 x T=1000 K=8 D=4", 64, 1000, args.repeats, left_to_right=True
    )
    if args.skip_fsdd:
        pass
    elif not pathlib.Path(args.fsdd_path).is_file():
        print(f"skipping (d): no FSDD tarball at {args.fsdd_path} (--fsdd_path)")
    else:
        records += _fsdd_records(args.fsdd_path, args.fsdd_iters)
    report(records, args.out)
    print(f"devices: {jax.devices()}; jax {jax.__version__}; timings provisional (shared machine)")


if __name__ == "__main__":
    main()
