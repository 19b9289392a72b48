"""Compilation paid once per machine: JAX's persistent compilation cache, on by default.

A fresh process otherwise recompiles every program it runs: a GMM fit on iris spends
0.9-1.5 s compiling what then runs in 2 ms. `enable_persistent_cache` (called when
genjax_lab is imported) points JAX's cache at a folder that outlives the process:

  GENJAX_COMPILATION_CACHE unset    $XDG_CACHE_HOME/genjax_lab/jax (default ~/.cache/genjax_lab/jax)
  GENJAX_COMPILATION_CACHE=DIR      DIR
  GENJAX_COMPILATION_CACHE=off      no persistent cache (also 0, false, no, none)

A cache the user set up first wins: JAX_COMPILATION_CACHE_DIR in the environment, or
jax.config.update("jax_compilation_cache_dir", ...) before genjax_lab is imported, and then
none of JAX's cache settings are touched either. Otherwise the thresholds drop to zero
(JAX's defaults keep only programs that took over a second to compile, and the small CPU
programs this project runs take 0.05-0.5 s each, many of them per fit) and the folder is
capped at MAX_CACHE_BYTES, least recently used programs evicted first.

`bucket_size` rounds a data size up to one of a few sizes, so datasets of nearby sizes pad
to the same shape and share one compiled program. `SizeTieredJit` compiles a fit twice over:
quickly for small problems, where compilation is nearly all of a first fit's time, and fully
optimised for the rest.

`load_lapack_kernels` makes the first program with a LAPACK call (a Cholesky factor) cheap to
lower: every process lowers its programs, even those the cache then supplies.
`freeze_startup_objects` keeps the imports' objects out of the garbage collector's scans
(GENJAX_GC_FREEZE=off leaves the collector as it is).
"""

import functools
import gc
import importlib.machinery
import importlib.util
import math
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
from jaxlib import lapack

_KERNEL_MODULES = ("cython_blas", "cython_lapack")
_lapack_loaded = False
_startup_frozen = False

ENV_VAR = "GENJAX_COMPILATION_CACHE"
# Programs are 2-150 kB each (a GMM fit on iris: six programs, 120 kB in all): a GiB holds
# every program of many experiments and still bounds a cache nobody clears.
MAX_CACHE_BYTES = 2**30
_OFF = ("off", "0", "false", "no", "none")


def default_cache_dir() -> pathlib.Path:
    """$XDG_CACHE_HOME/genjax_lab/jax, with XDG's default ~/.cache when the variable is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "genjax_lab" / "jax"


def cache_dir_setting() -> pathlib.Path | None:
    """The folder GENJAX_COMPILATION_CACHE asks for (None: switched off)."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value.lower() in _OFF:
        return None
    return pathlib.Path(value).expanduser() if value else default_cache_dir()


def enable_persistent_cache() -> pathlib.Path | None:
    """Turns the persistent cache on as the module doc says; returns the folder in use (the
    user's own when they set one, None when off)."""
    own = jax.config.jax_compilation_cache_dir
    if own:
        return pathlib.Path(own)
    folder = cache_dir_setting()
    if folder is None:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_CACHE_BYTES)
    return folder


def load_lapack_kernels() -> None:
    """Hands jaxlib scipy's BLAS and LAPACK kernel tables without importing scipy.linalg.

    jaxlib finds the routines its CPU programs call (Cholesky, triangular solves) in the
    extension modules scipy.linalg.cython_blas and cython_lapack, which it imports when it
    lowers the first such program. Imported the usual way they bring the whole of
    scipy.linalg with them: 0.2 s on a quiet machine, 0.45 s under load, paid by every
    process (a process whose programs all come from the cache still lowers them), a third of
    a cache-warm GMM fit. The two modules alone load in 0.02 s: loaded here, jaxlib takes
    their tables, and they leave sys.modules again, so that a later `import scipy.linalg`
    imports the package as usual. Does nothing once jaxlib has its kernels, or where scipy
    lays its files out otherwise (jaxlib then imports them itself)."""
    global _lapack_loaded
    if _lapack_loaded:
        return
    _lapack_loaded = True
    scipy = importlib.util.find_spec("scipy")
    if scipy is None or not scipy.submodule_search_locations or "scipy.linalg" in sys.modules:
        return
    folder = pathlib.Path(scipy.submodule_search_locations[0]) / "linalg"
    loaded = []
    for name in _KERNEL_MODULES:
        paths = [folder / f"{name}{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            break
        full_name = f"scipy.linalg.{name}"
        spec = importlib.util.spec_from_file_location(full_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[full_name] = module
        loaded.append(full_name)
    # jaxlib's own loader (private: where a jaxlib lacks it, its lowering imports as usual).
    initialize = getattr(getattr(lapack, "_lapack", None), "initialize", None)
    try:
        if initialize is not None and len(loaded) == len(_KERNEL_MODULES):
            initialize()
    finally:
        for full_name in loaded:
            del sys.modules[full_name]


def freeze_startup_objects() -> None:
    """Moves the objects alive at a process's first compiled call into the garbage
    collector's permanent generation (gc.freeze), once. They are mostly the imports' (JAX,
    NumPy, Flax, ours: about 150,000 for an LDA fit), which a full collection otherwise
    walks each time: one fell inside a first LDA fit's tracing, 80 ms of its 1.1 s. Reference
    counting still frees them as usual; only cycles already garbage by then are never
    collected, gc.freeze's documented trade: a long-lived host that must reclaim such cycles
    (a notebook that drops a model it built before its first fit) sets GENJAX_GC_FREEZE=off."""
    global _startup_frozen
    if not _startup_frozen:
        _startup_frozen = True
        if os.environ.get("GENJAX_GC_FREEZE", "").strip().lower() not in _OFF:
            gc.freeze()


def bucket_size(n: int, minimum: int = 128, steps_per_octave: int = 4) -> int:
    """The smallest size >= n among `minimum` and m 2^e for m in [steps, 2 steps): four
    sizes per doubling by default (128, 160, 192, 224, 256, 320, ...), so padding adds at
    most 25% of rows while sizes within a step share one compiled program."""
    if n <= minimum:
        return minimum
    exponent = max(math.ceil(math.log2(n / steps_per_octave)) - 1, 0)
    while True:
        unit = 2**exponent
        size = -(-n // unit) * unit
        if size < 2 * steps_per_octave * unit:
            return size
        exponent += 1


# Half of XLA's CPU compile time goes to LLVM's optimisation passes (a GMM fit program:
# 10.1 s -> 5.4 s under load, about 1 s -> 0.5 s on a quiet machine) that buy a program over
# a few thousand numbers only microseconds per iteration (the iris fit: 0.6 -> 1.2 ms). Of
# the rest, most goes to XLA's MLIR fusion emitters, a pass pipeline per fusion (a GMM fit:
# about 120 fusions); the elemental emitter they replace writes LLVM IR directly, in a
# quarter of the time (the iris GMM fit program: 1.04 -> 0.28 CPU s; a first casino HMM fit,
# all of it: 3.9 -> 2.1 CPU s) for the same run time. It lets LLVM contract a multiply and
# an add into one rounding (FMA): bitwise the same numbers where none is formed (GMM diag
# and spherical, HMM, LDA), one rounding apart where one is (the full and tied GMM
# covariances: 1e-6).
FAST_COMPILE_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
# Problems up to this many input numbers compile with FAST_COMPILE_OPTIONS.
SMALL_PROBLEM_SIZE = 2**14


class SizeTieredJit:
    """`fun` jitted twice: `small`, compiled with FAST_COMPILE_OPTIONS, and `large`, with
    XLA's defaults. Calling it with `problem_size=` (the number of input values, taken after
    bucketing so that one bucket always picks one tier) runs the tier that size belongs to:
    `small` up to `small_problem_size` (None: SMALL_PROBLEM_SIZE, read at each call), a
    program's own limit where its measured compile saving and slower iterations break even
    elsewhere. Both tiers compute the same function; they differ by float rounding at most."""

    def __init__(
        self, fun: Callable, small_problem_size: int | None = None, **jit_kwargs: Any
    ) -> None:
        self.small = jax.jit(fun, compiler_options=FAST_COMPILE_OPTIONS, **jit_kwargs)
        self.large = jax.jit(fun, **jit_kwargs)
        self.small_problem_size = small_problem_size
        self.__wrapped__ = fun

    def cache_size(self) -> int:
        """Programs compiled so far, both tiers together."""
        return self.small._cache_size() + self.large._cache_size()

    def __call__(self, *args: Any, problem_size: int, **kwargs: Any) -> Any:
        load_lapack_kernels()
        freeze_startup_objects()
        limit = SMALL_PROBLEM_SIZE if self.small_problem_size is None else self.small_problem_size
        # Inside another trace (a loop's step, vmap) the call is inlined into the outer
        # program, whose options apply; JAX refuses compiler options on a nested jit.
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs)))
        program = self.small if problem_size <= limit and not traced else self.large
        return program(*args, **kwargs)


def size_tiered_jit(
    small_problem_size: int | None = None, **jit_kwargs: Any
) -> Callable[[Callable], SizeTieredJit]:
    """Decorator form of SizeTieredJit: `@size_tiered_jit(static_argnames=(...))`."""
    return lambda fun: SizeTieredJit(fun, small_problem_size, **jit_kwargs)


def fast_compiling_jit(**jit_kwargs: Any) -> Callable[[Callable], Callable]:
    """Decorator: `fun` jitted with FAST_COMPILE_OPTIONS at every size (inside another trace
    inlined there, as SizeTieredJit), for programs whose run time is negligible beside their
    compile time at any size: a start's random draws (LDA's 10 x 3,768 normal draws compile
    about 3x faster on this tier and run in a millisecond either way)."""

    def decorate(fun: Callable) -> Callable:
        tiered = SizeTieredJit(fun, small_problem_size=sys.maxsize, **jit_kwargs)
        return functools.wraps(fun)(functools.partial(tiered, problem_size=0))

    return decorate
