"""Compilation: the persistent cache set-up, and fits that reuse their compiled programs
when only a number changes (iteration count, tolerance, a data size within a bucket)."""

import contextlib
import functools
import importlib
import os
import pathlib
import subprocess
import sys

import jax
import jax.monitoring
import numpy as np
import pytest

from genjax_lab.core import compilation
from genjax_lab.models import gmm, hmm
from genjax_lab.models import naive_bayes as nb

_LOWERED = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # once per program traced and lowered
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compilations():
    """Counts programs JAX lowers (each miss of its in-memory cache) inside the block."""
    events = []

    def listener(event: str, duration: float, **_) -> None:
        if event == _LOWERED:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@contextlib.contextmanager
def backend_compile_seconds():
    """The seconds XLA spends compiling each program inside the block."""
    seconds = []

    def listener(event: str, duration: float, **_) -> None:
        if event == _BACKEND_COMPILE:
            seconds.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seconds
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _blobs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 4)) + 3 * rng.integers(0, 3, size=(n, 1))).astype(np.float32)


def test_counter_sees_a_recompilation():
    f = jax.jit(lambda x: x * 2)
    f(np.ones(3, np.float32))
    with count_compilations() as compiled:
        f(np.ones(3, np.float32))
    assert not compiled
    with count_compilations() as compiled:
        f(np.ones(5, np.float32))
    assert len(compiled) == 1


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_fit_reuses_its_program(covariance_type):
    config = gmm.default_config()
    config.update(num_components=3, covariance_type=covariance_type, num_iters=100)
    gmm.fit(jax.random.key(0), {"x": _blobs(150)}, config)
    with count_compilations() as compiled:
        # Another size in the same bucket, another iteration count, tolerance, key, regulariser,
        # k-means iteration count and number of starts.
        config.update(num_iters=60, tol=1e-5, reg_covar=1e-4, kmeans_iters=5, num_inits=2)
        _, history = gmm.fit(jax.random.key(1), {"x": _blobs(140, seed=1)}, config)
        config.update(num_iters=7, tol=0.0, reg_covar=1e-6, kmeans_iters=20, num_inits=1)
        gmm.fit(jax.random.key(2), {"x": _blobs(131, seed=2)}, config)
    assert not compiled, compiled
    assert 1 < history["num_iters"] <= 60


def test_gmm_classifier_reuses_its_program():
    x, y = _blobs(220), np.repeat([0, 1], 110)
    config = gmm.default_config()
    config.update(class_conditional=True, covariance_type="diag", num_iters=20)
    gmm.fit(jax.random.key(0), {"x": x, "y": y}, config)
    with count_compilations() as compiled:  # 220 and 200 rows: both padded to 224
        config.update(num_iters=35, tol=1e-6)
        _, history = gmm.fit(jax.random.key(1), {"x": x[:200], "y": y[:200]}, config)
    assert not compiled, compiled
    history = history["log_likelihood"]
    assert history.shape[0] == 2 and 1 < history.shape[1] <= 35


def test_bucket_sizes():
    sizes = [compilation.bucket_size(n) for n in range(1, 5000)]
    assert sizes[0] == sizes[127] == 128
    assert all(n + 1 <= s <= max(128, 1.25 * (n + 1)) for n, s in enumerate(sizes))
    assert len(set(sizes)) <= 4 * 6 + 1  # four sizes per doubling from 128 to 8192


def test_cache_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(compilation.ENV_VAR, raising=False)
    assert compilation.cache_dir_setting() == tmp_path / "xdg" / "genjax_lab" / "jax"
    monkeypatch.setenv(compilation.ENV_VAR, str(tmp_path / "mine"))
    assert compilation.cache_dir_setting() == tmp_path / "mine"
    for off in ("off", "0", "OFF", "false"):
        monkeypatch.setenv(compilation.ENV_VAR, off)
        assert compilation.cache_dir_setting() is None


_SCRIPT = """
import jax, jax.monitoring, numpy as np
events = []
jax.monitoring.register_event_listener(lambda event, **_: events.append(event))
jax.monitoring.register_event_duration_secs_listener(lambda event, d, **_: events.append(event))
from genjax_lab.models import gmm
x = np.random.default_rng(0).normal(size=(150, 4)).astype(np.float32)
config = gmm.default_config()
config.num_components = 3
gmm.fit(jax.random.key(0), {"x": x}, config)
print(jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs,
      jax.config.jax_compilation_cache_max_size)
print(events.count("/jax/compilation_cache/cache_hits"),
      events.count("/jax/compilation_cache/cache_misses"))
import sys
print("scipy.linalg" in sys.modules)
from sklearn.mixture import GaussianMixture
print(GaussianMixture(3, random_state=0).fit(x).converged_)
"""


def _run(env: dict, script: str = _SCRIPT) -> list[str]:
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "", **env}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split("\n")


def test_second_process_loads_the_fit_from_the_cache(tmp_path):
    folder = tmp_path / "cache"
    settings, first, scipy_linalg_imported, reference_converged = _run(
        {compilation.ENV_VAR: str(folder)}
    )[:4]
    assert settings == f"{folder} 0.0 {compilation.MAX_CACHE_BYTES}"
    hits, misses = map(int, first.split())
    assert hits == 0 and misses > 0
    # The fit's Cholesky factors found their LAPACK kernels without importing scipy.linalg
    # (0.2-0.45 s), which still imports and works afterwards (scikit-learn's mixture uses it).
    assert scipy_linalg_imported == "False"
    assert reference_converged == "True"
    assert any(folder.iterdir())
    hits, misses = map(int, _run({compilation.ENV_VAR: str(folder)})[1].split())
    assert hits > 0 and misses == 0, (hits, misses)
    # The user's own cache setting wins, thresholds untouched.
    own = tmp_path / "own"
    settings = _run({compilation.ENV_VAR: str(folder), "JAX_COMPILATION_CACHE_DIR": str(own)})[0]
    assert settings == f"{own} 1.0 -1"
    assert _run({compilation.ENV_VAR: "off"})[0].startswith("None")


def _corpus(num_docs: int, seed: int = 0):
    from genjax_lab.data import text

    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(40, 0.1), size=4)
    docs = [rng.choice(40, size=30, p=topics[rng.integers(4)]) for _ in range(num_docs)]
    return text.bag_of_ids(docs)


def test_lda_batch_fit_reuses_its_step():
    from genjax_lab.models import lda

    config = lda.LDAConfig(4, 40, max_doc_iter=20)
    lda.fit_vb(jax.random.key(0), _corpus(120), config, num_iters=3)
    other = lda.LDAConfig(4, 40, alpha=0.5, eta=0.2, max_doc_iter=35, mean_change_tol=1e-4)
    with count_compilations() as compiled:
        _, history = lda.fit_vb(
            jax.random.key(1), _corpus(115, seed=1), other, num_iters=30, tol=1e-4
        )
    assert not compiled, compiled
    assert 1 < len(history.bounds) < 30  # stopped by tol, the iteration it stopped at


def _hmm_sequences(num: int, length: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(num, length, 2)).astype(np.float32)
    obs[:, length // 2 :] += 3.0
    return hmm.Sequences(obs, rng.integers(length // 2, length + 1, num))


def test_hmm_fit_reuses_its_program():
    config = hmm.default_config()
    config.update(num_states=2, emission="diag", num_iters=30)
    hmm.fit(jax.random.key(0), {"x": _hmm_sequences(20, 50)}, config)
    with count_compilations() as compiled:
        # 18 and 20 sequences share a bucket (20), as do 53 and 50 steps (56); another
        # iteration count, tolerance, prior, key and number of starts.
        config.update(num_iters=12, tol=1e-5, num_inits=2)
        config.prior.covariance_prior = 1e-3
        _, history = hmm.fit(jax.random.key(1), {"x": _hmm_sequences(18, 53, seed=1)}, config)
    assert not compiled, compiled
    assert 1 < history["num_iters"] <= 12


def test_size_tiered_jit_compiles_small_problems_quickly_and_large_ones_fully():
    tiered = compilation.size_tiered_jit(static_argnames=("power",))(
        lambda x, power: jax.numpy.sum(jax.numpy.tanh(x) ** power)
    )
    x = np.linspace(-2, 2, 64, dtype=np.float32)
    small = tiered(x, power=3, problem_size=x.size)
    assert (tiered.small._cache_size(), tiered.large._cache_size()) == (1, 0)
    large = tiered(x, power=3, problem_size=compilation.SMALL_PROBLEM_SIZE + 1)
    assert (tiered.small._cache_size(), tiered.large._cache_size()) == (1, 1)
    np.testing.assert_allclose(small, large, rtol=1e-6)
    # Called inside another trace it is inlined there (a nested jit may not set options).
    nested = jax.jit(lambda x: tiered(x, power=3, problem_size=x.size))(x)
    np.testing.assert_allclose(nested, large, rtol=1e-6)


def test_first_compiled_call_freezes_the_startup_objects_once():
    """The imports' objects leave the collector's full scans at the first fit, and only
    then: importing the library alone changes nothing."""
    script = (
        "import gc, numpy as np\n"
        "from genjax_lab.core import compilation\n"
        "before = gc.get_freeze_count()\n"
        "square = compilation.fast_compiling_jit()(lambda x: x * x)\n"
        "square(np.ones(3, np.float32))\n"
        "first = gc.get_freeze_count()\n"
        "keep = [[i] for i in range(100)]\n"
        "square(np.ones(3, np.float32))\n"
        "print(before, first, gc.get_freeze_count())\n"
    )

    def counts(**env):
        return tuple(map(int, _run(env, script)[0].split()))

    before, first, second = counts()
    assert before == 0 and first > 10_000 and second == first
    assert counts(GENJAX_GC_FREEZE="off") == (0, 0, 0)


def test_gmm_fit_on_small_data_runs_the_fast_compiling_tier():
    from genjax_lab.models.gmm import family

    config = gmm.default_config()
    config.update(num_components=3, covariance_type="diag", num_iters=50)
    before = family._fit_program.large._cache_size()
    fit = functools.partial(gmm.fit, jax.random.key(0), {"x": _blobs(150)}, config)
    with backend_compile_seconds() as small_seconds:
        small_params, _ = fit()
    assert family._fit_program.small._cache_size() >= 1
    assert family._fit_program.large._cache_size() == before
    # The same fit on the fully optimised tier agrees to float rounding.
    with backend_compile_seconds() as large_seconds:
        large_params, _ = _on_the_large_tier(family._fit_program, fit)
    # XLA's elemental emitter and no LLVM optimisation: about a sixth of the full compile
    # (LLVM's passes alone off: about half).
    assert sum(small_seconds) < 0.35 * sum(large_seconds), (small_seconds, large_seconds)
    for a, b in zip(jax.tree.leaves(small_params), jax.tree.leaves(large_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _on_the_large_tier(program: compilation.SizeTieredJit, fit):
    """fit() again with every size on the fully optimised tier, which must compile it."""
    large = program.large._cache_size()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(program, "small_problem_size", -1)
        result = fit()
    assert program.large._cache_size() == large + 1
    return result


def _symbols(num: int, length: int, num_symbols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    states = np.cumsum(rng.random((num, length)) < 0.1, axis=1) % 2
    return np.where(states == 1, num_symbols - 1, rng.integers(0, num_symbols, (num, length)))


def _hmm_symbol_fit(num: int, length: int, class_conditional: bool = False):
    config = hmm.default_config()
    config.update(emission="categorical", num_states=3, num_iters=20, tol=-np.inf)
    config.class_conditional = class_conditional
    x = _symbols(num, length, num_symbols=5).astype(np.int32)
    data = {"x": x, "y": np.arange(num) % 2} if class_conditional else {"x": x}
    key = jax.random.key(0)  # made here: making a key compiles programs of its own
    return lambda: hmm.fit(key, data, config)


def test_hmm_fit_compiles_one_program_on_the_fast_tier():
    program = importlib.import_module("genjax_lab.models.hmm.fit")._fit_program
    fit = _hmm_symbol_fit(37, 70)  # sizes no other test uses: nothing is in JAX's cache yet
    large = program.large._cache_size()
    with count_compilations() as compiled:
        small, _ = fit()
    # The fit is the only program: host-side conversions used to compile one each.
    assert len(compiled) == 1, compiled
    assert program.small._cache_size() >= 1 and program.large._cache_size() == large
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(small))


@pytest.mark.slow  # a second HMM program; GMM's tier test covers the mechanism in CI
def test_hmm_fit_tiers_agree():
    fit = _hmm_symbol_fit(37, 70)
    small, _ = fit()
    large, _ = _on_the_large_tier(
        importlib.import_module("genjax_lab.models.hmm.fit")._fit_program, fit
    )
    for a, b in zip(jax.tree.leaves(small), jax.tree.leaves(large), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_class_conditional_hmm_fit_compiles_one_program():
    fit = _hmm_symbol_fit(45, 90, class_conditional=True)
    with count_compilations() as compiled:
        params, _ = fit()
    assert len(compiled) == 1, compiled
    assert isinstance(params.log_prior, jax.Array)


@pytest.mark.parametrize("kind", ["multinomial", "gaussian"])
def test_naive_bayes_fit_compiles_two_programs(kind):
    # Seven classes and 23 features, sizes no other test uses: the statistics and the
    # parameters are the only programs (the class prior's eager operations compiled four).
    rng = np.random.default_rng(0)
    x, y = rng.poisson(3.0, (70, 23)).astype(np.float32), np.arange(70) % 7
    config = nb.default_config()
    config.update({"kind": kind, "class_prior": () if kind == "gaussian" else (1 / 7,) * 7})
    key = jax.random.key(0)  # making a key compiles programs of its own
    with count_compilations() as compiled:
        params, _ = nb.fit(key, {"x": x, "y": y}, config)
    assert len(compiled) == 2, compiled
    np.testing.assert_allclose(np.exp(params.log_prior), 1 / 7, rtol=1e-6)


def test_lda_batch_fit_on_a_small_corpus_runs_the_fast_compiling_tier():
    from genjax_lab.models import lda
    from genjax_lab.models.lda import vb

    config = lda.LDAConfig(4, 40, max_doc_iter=20)
    large = vb._batch_step.large._cache_size()
    fit = functools.partial(lda.fit_vb, jax.random.key(0), _corpus(120), config, num_iters=5)
    small, small_history = fit()
    assert vb._batch_step.small._cache_size() >= 1
    assert vb._batch_step.large._cache_size() == large
    big, big_history = _on_the_large_tier(vb._batch_step, fit)
    np.testing.assert_allclose(small_history.bounds, big_history.bounds, rtol=1e-5)
    np.testing.assert_allclose(small.lam, big.lam, rtol=1e-4)


def test_lda_batch_start_is_init_vb_of_the_split_key():
    # One compiled program in place of eager key operations, bitwise the same start.
    from genjax_lab.models import lda
    from genjax_lab.models.lda import vb

    config, key = lda.LDAConfig(3, 17), jax.random.key(4)
    init_key = jax.random.split(key)[0]
    pairs = [
        (vb._batch_start(key, None, config), lda.init_vb(init_key, config)),
        (vb._batch_start(key, 2, config), lda.init_vb(jax.random.fold_in(init_key, 2), config)),
    ]
    for ours, expected in pairs:
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("width", [2, 3, 6])
def test_categorical_hmm_start_rows_are_flat_dirichlet_without_a_gamma_sampler(width):
    # The gamma sampler's rejection loop was most of a casino fit's compile time: the start's
    # Dirichlet(1) rows are normalised Exp(1) draws instead, the same distribution. Checked
    # against it: the first coordinate of a flat Dirichlet of width n is Beta(1, n - 1), and
    # every probability is positive (a zero would be a structural zero EM never leaves).
    scipy_stats = pytest.importorskip("scipy.stats")
    fit_module = importlib.import_module("genjax_lab.models.hmm.fit")
    keys = jax.random.split(jax.random.key(7), 4000)
    rows = jax.vmap(lambda k: fit_module._flat_dirichlet_rows(k, 1, width, np.float32))(keys)
    rows = np.asarray(rows)[:, 0]
    assert (rows > 0).all()
    np.testing.assert_allclose(rows.sum(-1), 1.0, rtol=1e-6)
    assert scipy_stats.kstest(rows[:, 0], scipy_stats.beta(1, width - 1).cdf).pvalue > 1e-3
    start = jax.make_jaxpr(fit_module.init_categorical_hmm, static_argnums=(1, 2))
    assert "random_gamma" not in str(start(keys[0], 2, 6))


def test_categorical_hmm_start_is_sticky_and_left_to_right_keeps_its_zeros():
    fit_module = importlib.import_module("genjax_lab.models.hmm.fit")
    start = fit_module.init_categorical_hmm(jax.random.key(3), 4, 5)
    transition = np.exp(np.asarray(start.transition_logits))
    np.testing.assert_allclose(transition.sum(-1), 1.0, rtol=1e-6)
    assert (np.diag(transition) >= 0.8).all() and (transition > 0).all()
    chain = fit_module.init_categorical_hmm(jax.random.key(3), 4, 5, left_to_right=True)
    np.testing.assert_array_equal(chain.emission.logits, start.emission.logits)
    assert np.isneginf(np.asarray(chain.transition_logits)[1, 0])
