"""Devices and hosts: the 1-D `data` mesh, batch sharding, and the multi-host start.

Every family is data-parallel: parameters are replicated, the leading (batch) axis of
every batch is split over the `data` axis. Under `jax.jit`, a sum over that axis is a
cross-device reduction inside the compiled step, which is how gradients and sufficient
statistics are reduced.
"""

import os
import sys
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

# launch.sh sets these; a run never guesses that it is part of a cluster.
ENV_DISTRIBUTED = "GENJAX_DISTRIBUTED"
ENV_COORDINATOR = "GENJAX_COORDINATOR"
ENV_NUM_PROCESSES = "GENJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "GENJAX_PROCESS_ID"
ENV_HEARTBEAT = "GENJAX_HEARTBEAT_TIMEOUT_S"


class DistributedStartError(RuntimeError):
    """The multi-host start was asked for and failed: never fall back to lone jobs."""


def initialize_distributed(environ: Mapping[str, str] = os.environ) -> None:
    """Joins the JAX cluster when launch.sh asked for one (GENJAX_DISTRIBUTED=1)."""
    if environ.get(ENV_DISTRIBUTED, "0") != "1":
        return
    try:
        coordinator = environ[ENV_COORDINATOR]
        num_processes = int(environ[ENV_NUM_PROCESSES])
        process_id = int(environ[ENV_PROCESS_ID])
    except (KeyError, ValueError) as e:
        raise DistributedStartError(
            f"{ENV_DISTRIBUTED}=1 but {e} is missing or not a number: set "
            f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} (launch.sh does)"
        ) from e
    heartbeat = int(environ.get(ENV_HEARTBEAT, "30"))
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            heartbeat_timeout_seconds=heartbeat,
            initialization_timeout=120,
        )
    except Exception as e:
        raise DistributedStartError(
            f"process {process_id}/{num_processes} could not join the JAX cluster at "
            f"{coordinator}: {e}"
        ) from e
    # Every process says it, in its own log: the first thing to read when a cluster hangs.
    print(
        f"joined JAX cluster at {coordinator}: process {jax.process_index()} of "
        f"{jax.process_count()}, {jax.local_device_count()} local / "
        f"{jax.device_count()} global devices",
        file=sys.stderr,
        flush=True,
    )


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: every device of every host)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over `data`, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(mesh: Mesh, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Assembles each host's rows of a batch into global arrays sharded over `data`.

    `local_batch` leaves: [B / num_processes, ...] on this host.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(dict(local_batch), sharding)  # one call: half the host time
    return {
        name: jax.make_array_from_process_local_data(sharding, value)
        for name, value in local_batch.items()
    }


def host_copy(tree):
    """Host numpy copy of a replicated pytree, also on hosts that see only their devices."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def is_batch_sharded(x: jax.Array) -> bool:
    """Whether x's leading axis is split over an Explicit mesh axis (as seen while tracing)."""
    spec = jax.typeof(x).sharding.spec
    return bool(spec) and spec[0] is not None


def batch_einsum(subscripts: str, *operands: jax.Array, precision=None) -> jax.Array:
    """`jnp.einsum` that contracts the (possibly sharded) batch axis to a replicated result.

    On a mesh with Explicit axes (the default of `jax.make_mesh`) a contraction over a sharded
    axis needs its output sharding stated; this states "replicated", which makes XLA reduce the
    per-device partial sums across devices. Elsewhere it is plain einsum.
    """
    for operand in operands:
        if is_batch_sharded(operand):
            mesh = jax.typeof(operand).sharding.mesh
            return jax.numpy.einsum(
                subscripts,
                *operands,
                precision=precision,
                out_sharding=NamedSharding(mesh, PartitionSpec()),
            )
    return jax.numpy.einsum(subscripts, *operands, precision=precision)


def on_device(x):
    """x as a device array, copied once on the host first where that is the faster way in.

    XLA's CPU client takes a host array without a copy when its data are 64-byte aligned, but
    copies a misaligned one element by element, about 5x slower than numpy's copy (MNIST train
    images, 188 MB: 100 ms against 20 ms); large numpy arrays are usually only 16-byte aligned.
    Anything but a numpy array (or a non-canonical dtype, which jax converts anyway) is
    returned as it is.
    """
    if (
        not isinstance(x, np.ndarray)
        or jax.default_backend() != "cpu"
        or x.ctypes.data % 64 == 0
        or x.dtype != jax.dtypes.canonicalize_dtype(x.dtype)
    ):
        return x
    buffer = np.empty(x.nbytes + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    aligned = buffer[start : start + x.nbytes].view(x.dtype).reshape(x.shape)
    np.copyto(aligned, x)
    return jax.device_put(aligned)
