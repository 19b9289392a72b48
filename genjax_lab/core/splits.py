"""Reductions over a whole split on the `data` mesh: the evaluation of every family.

Batch i is global batch i of `data.eval_batches` (rows in order, padded rows with mask 0),
assembled from every host's share and sharded over `data`, so the reductions run across
devices and hosts inside the compiled function; a streaming split is read a batch at a time.
"""

from collections.abc import Callable
from typing import Any

import jax

from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib


def sum_over_split(
    batch_sums: Callable[[dict[str, jax.Array], int], Any],
    mesh,
    split: data_lib.Split,
    batch_size: int,
) -> Any:
    """The sum over the split's batches i of the pytree `batch_sums(batch, i)`, on device."""
    totals = None
    for i, local in enumerate(data_lib.eval_batches(split, batch_size)):
        sums = batch_sums(mesh_lib.global_batch(mesh, local), i)
        totals = sums if totals is None else jax.tree.map(jax.numpy.add, totals, sums)
    return totals


def evaluate(eval_fn, state, mesh, arrays, batch_size: int, key) -> dict[str, float]:
    """Means over the whole split of an eval step's mask-weighted sums."""
    totals = sum_over_split(
        lambda batch, i: eval_fn(state, batch, jax.random.fold_in(key, i)), mesh, arrays, batch_size
    )
    size = data_lib.num_examples(arrays)
    return {k: float(v) / size for k, v in mesh_lib.host_copy(totals).items()}
