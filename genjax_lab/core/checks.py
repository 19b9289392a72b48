"""Input checks for the public entry points: host-side, on concrete values, before jit.

Every check raises a ValueError whose message names the argument at fault (a wrong dtype
raises DTypeError, which is both a TypeError and a ValueError; a container of the wrong
kind, TypeError), so bad input fails at the call with its name rather than as a NaN or an
XLA shape error deep inside compiled code.

Inside jit the arguments are tracers without values. `validated` skips its check then, so
compiled code and its hot loops carry no checks: a function validates once per call from
Python, and not at all when another jitted function calls it.
"""

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Accepted dtype kinds (numpy's dtype.kind letters).
FLOAT = "f"
REAL = "biuf"  # anything a model can convert to floating point without losing information
INTEGER = "iu"
_KIND_NAMES = {
    FLOAT: "floating-point",
    REAL: "real (bool, integer or floating-point)",
    INTEGER: "integer",
}


class DTypeError(TypeError, ValueError):
    """A wrong dtype. Also a ValueError, so that entry points which report bad input in one
    line (genjax_lab.core.config.USER_ERRORS) report this too."""


def is_checkable(*trees) -> bool:
    """Whether the values of every array in `trees` can be read on this host: no tracer (as
    inside jit) and no array spread over other processes' devices."""
    for leaf in jax.tree.leaves(trees):
        if isinstance(leaf, jax.core.Tracer):
            return False
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return False
    return True


def validated(check: Callable[..., None]) -> Callable[[Callable], Callable]:
    """Decorator: calls `check(**arguments)` (every parameter by name, defaults filled in)
    before the function, whenever `is_checkable` holds for all arguments. `check` takes the
    parameters it needs and `**_` for the rest."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def checked(*args, **kwargs):
            if is_checkable(args, kwargs):
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                check(**bound.arguments)
            return fn(*args, **kwargs)

        return checked

    return decorate


def _kind(dtype: np.dtype) -> str:
    # bfloat16 and the other ml_dtypes floats have numpy kind "V"
    return FLOAT if jnp.issubdtype(dtype, jnp.floating) else dtype.kind


def _first(mask: np.ndarray) -> str:
    """The index of the first True entry of mask as a subscript `[i, j]` ("" for a scalar)."""
    if mask.ndim == 0:
        return ""
    return "[" + ", ".join(str(int(i)) for i in np.argwhere(mask)[0]) + "]"


def check_array(
    name: str,
    x,
    dims: Sequence[str | int] | None = None,
    *,
    kinds: str = REAL,
    finite: bool = True,
    allow_nan: bool = False,
    nonempty: bool = True,
    nonnegative: bool = False,
    positive: bool = False,
    where=None,
) -> np.ndarray:
    """`x` as a NumPy array, or an error naming `name`.

    dims: one entry per axis, a name (any size) or an int (that size), e.g. ("N", "D") or
    ("B", 5). kinds: accepted dtype kinds (FLOAT, REAL, INTEGER). finite: no NaN or inf
    (with allow_nan, NaN is accepted: it marks a missing value). nonempty: no axis of
    length 0. nonnegative / positive: every entry >= 0 / > 0. where: a boolean array over
    x's leading axes; the value checks (finite, sign) then look only at the entries it
    selects (e.g. rows that are not padding).
    """
    if x is None:
        raise ValueError(f"{name} is required, got None")
    array = np.asarray(x)
    if dims is not None:
        wanted = "[" + ", ".join(str(d) for d in dims) + "]"
        fixed = [(axis, size) for axis, size in enumerate(dims) if isinstance(size, int)]
        if array.ndim != len(dims) or any(array.shape[axis] != size for axis, size in fixed):
            raise ValueError(f"{name} must be {wanted}, got shape {array.shape}")
    if _kind(array.dtype) not in kinds:
        raise DTypeError(
            f"{name} must have a {_KIND_NAMES.get(kinds, kinds)} dtype, got {array.dtype}"
        )
    if nonempty and 0 in array.shape:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    selected = (
        True
        if where is None
        else np.reshape(where, np.shape(where) + (1,) * (array.ndim - np.ndim(where)))
    )
    if finite and _kind(array.dtype) == FLOAT and not np.isfinite(array).all():
        bad = (np.isinf(array) if allow_nan else ~np.isfinite(array)) & selected
        if bad.any():
            raise ValueError(
                f"{name} must be finite{' or NaN' if allow_nan else ''}, "
                f"{name}{_first(bad)} = {array[bad][0]}"
            )
    if positive or nonnegative:
        bad = (~(array > 0) if positive else array < 0) & selected
        if allow_nan:
            bad &= ~np.isnan(array)
        if bad.any():
            raise ValueError(
                f"{name} must be {'positive' if positive else 'non-negative'}, "
                f"{name}{_first(bad)} = {array[bad][0]}"
            )
    return array


def check_finite_tree(name: str, tree, *, allow_neg_inf: bool = False) -> None:
    """Every floating-point leaf of a parameter pytree is finite; the error names the leaf
    (e.g. `params.means[1, 0] = nan`). allow_neg_inf: -inf is a value (a log 0)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(leaf)
        if _kind(array.dtype) != FLOAT or np.isfinite(array).all():
            continue
        bad = (np.isnan(array) | (array == np.inf)) if allow_neg_inf else ~np.isfinite(array)
        if bad.any():
            path_name = jax.tree_util.keystr(path, simple=True, separator=".")
            leaf_name = f"{name}.{path_name}" if path_name else name
            raise ValueError(
                f"{leaf_name} must be finite{' or -inf' if allow_neg_inf else ''}, "
                f"{leaf_name}{_first(bad)} = {array[bad][0]}"
            )


def check_simplex(
    name: str, probs, shape: tuple[int, ...] | None = None, atol: float = 1e-6
) -> np.ndarray:
    """Probabilities over the last axis: finite, >= 0, every row summing to 1 (within
    atol). Returns them as float64."""
    p = check_array(name, probs, kinds=REAL, nonnegative=True).astype(np.float64)
    if shape is not None and p.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {p.shape}")
    if p.ndim == 0:
        raise ValueError(f"{name} must have at least one state/category, got shape {p.shape}")
    sums = p.sum(axis=-1)
    bad = np.abs(sums - 1.0) > atol
    if bad.any():
        row = tuple(int(i) for i in np.argwhere(bad)[0]) if p.ndim > 1 else ()
        label = f"row {row[0] if len(row) == 1 else row}" if p.ndim > 1 else "it"
        raise ValueError(f"{name} rows must sum to 1, {label} sums to {sums[row]:.6g}")
    return p


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if high == math.inf:
        return f"{'>' if low_open else '>='} {low:g}"
    if low == -math.inf:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(
    name: str,
    value,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real scalar (Python or NumPy number, or a 0-d array) in the interval from
    low to high (open ends as given), as a float. Bools and strings are refused."""
    if isinstance(value, (np.ndarray, jax.Array)) and value.ndim == 0:
        is_real = _kind(value.dtype) in "iuf"
    else:
        is_real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not is_real:
        raise DTypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value}")
    above = low < number or (not low_open and low == number)
    below = number < high or (not high_open and number == high)
    if not (above and below):
        raise ValueError(f"{name} must be {_interval(low, high, low_open, high_open)}, got {value}")
    return number


def check_positive(name: str, value) -> float:
    """A finite real number > 0."""
    return check_number(name, value, low=0.0, low_open=True)


def check_count(name: str, value, minimum: int = 1) -> int:
    """An integer (not a bool, not a float such as 2.0) >= minimum, as an int."""
    if isinstance(value, (np.ndarray, jax.Array)) and value.ndim == 0:
        is_integer = _kind(value.dtype) in INTEGER
    else:
        is_integer = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if not is_integer:
        raise DTypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_counts(name: str, values, minimum: int = 1) -> tuple[int, ...]:
    """A sequence of integers >= minimum (e.g. layer widths), as a tuple of ints."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise DTypeError(f"{name} must be a sequence of integers, got {values!r}")
    return tuple(check_count(f"{name}[{i}]", value, minimum) for i, value in enumerate(values))


def check_choice(name: str, value, choices: Sequence) -> None:
    """value is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_mapping(name: str, value, keys: Sequence[str]) -> None:
    """value is a mapping (e.g. a batch dict) holding every one of `keys`; checks only its
    structure, so it holds inside jit too."""
    if isinstance(value, Mapping) and set(keys) <= set(value):
        return
    if isinstance(value, Mapping):
        got = f"keys {sorted(value)}"
    else:
        shape = f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""
        got = type(value).__name__ + shape
    wanted = ", ".join(repr(k) for k in sorted(keys))
    raise TypeError(f"{name} must be a mapping with keys {wanted}, got {got}")


class NonFiniteError(FloatingPointError):
    """A loss or statistic became NaN or infinite: the run stops, checkpoints kept."""
