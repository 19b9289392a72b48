"""Orbax checkpoints that refuse what they cannot trust.

Each step folder holds two items: `state` (the training pytree) and `meta` (JSON: step,
data position, resolved config, leaf shapes, a SHA-256 of the state's bytes, package
versions, git commit). Orbax stores no checksum of array data, so bytes overwritten in
place would restore silently; the hash catches that. A checkpoint whose config or shapes
differ from the run's is refused, naming the difference.
"""

import contextlib
import errno
import hashlib
import json
import os
import pathlib
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from genjax_lab.core import mesh as mesh_lib

# Config keys a resumed run may change: how long to train and how to log, save or profile.
RESUMABLE_CONFIG_KEYS = frozenset(
    {
        "num_steps",
        "num_epochs",
        "log_every",
        "eval_every",
        "checkpoint",
        "profile",
        "steps_per_call",  # how steps are grouped into compiled calls: the numbers are the same
    }
)


class CheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be used."""


class CorruptCheckpoint(CheckpointError):
    """Unreadable, truncated, or its bytes do not hash to what was saved."""


class CheckpointMismatch(CheckpointError):
    """Written by another config or for other shapes: never an older one's fault."""


class CheckpointWriteError(CheckpointError):
    """A save failed for lack of space: the checkpoints already on disk are untouched."""


# Orbax reports a full disk from its TensorStore writers as a ValueError carrying the OS
# error text, so the errno alone does not identify it.
_DISK_FULL_MARKS = ("No space left on device", "Disk quota exceeded", "File too large")
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _disk_full_reason(error: BaseException) -> str | None:
    """The OS's words for a full disk or quota in `error`, or None for any other error."""
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
        return os.strerror(error.errno)
    return next((mark for mark in _DISK_FULL_MARKS if mark in str(error)), None)


def state_digest(state) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes (host copy)."""
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(mesh_lib.host_copy(_key_data(state)))[0]
    for path, leaf in leaves:
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}|".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()


def leaf_shapes(state) -> dict[str, list]:
    """`{path: [shape, dtype]}` of a (possibly abstract) state, for mismatch reports."""
    leaves = jax.tree_util.tree_flatten_with_path(_key_data(state, abstract=True))[0]
    return {jax.tree_util.keystr(p): [list(x.shape), str(x.dtype)] for p, x in leaves}


def _key_data(tree, abstract: bool = False):
    """Typed PRNG keys as their raw uint32 data, so they hash and compare like arrays."""

    def raw(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.eval_shape(jax.random.key_data, x) if abstract else jax.random.key_data(x)
        return x

    return jax.tree.map(raw, tree)


def config_differences(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    prefix: str = "",
    *,
    keys_added_since: bool = False,
) -> list[str]:
    """Dotted names of config entries that differ, outside RESUMABLE_CONFIG_KEYS.

    keys_added_since: a key the saved config lacks is not a difference. For a checkpoint
    written before the key existed: every config key is added with a default that keeps
    what runs did before (the project's rule for new options), so the run resumes as it was."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        if not prefix and key in RESUMABLE_CONFIG_KEYS:
            continue
        if keys_added_since and key not in saved:
            continue
        name = f"{prefix}{key}"
        old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            differences += config_differences(
                old, new, prefix=f"{name}.", keys_added_since=keys_added_since
            )
        elif old != new:
            differences.append(f"{name}: checkpoint has {old!r}, this run has {new!r}")
    return differences


class Checkpointer:
    """Saves every `every` steps (asynchronously), keeps the newest `keep`.

    Orbax's default save policy also saves a fresh run's first step and any step at which
    JAX reports a preemption; the loop forces its own final and preemption saves, so the
    policy here is the interval alone and the steps saved are exactly those asked for.
    """

    def __init__(self, directory: pathlib.Path, every: int, keep: int):
        self.directory = pathlib.Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(every),
                max_to_keep=keep,
                enable_async_checkpointing=True,
                cleanup_tmp_directories=True,
            ),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, meta: Mapping[str, Any], force: bool = False) -> bool:
        """Saves when the interval (or `force`) says so; returns whether it saved."""
        if not (force or self.manager.should_save(step)):
            return False
        meta = dict(meta, step=step, state_sha256=state_digest(state), shapes=leaf_shapes(state))
        with self._disk_full_reported():
            return self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=force,
            )

    @contextlib.contextmanager
    def _disk_full_reported(self):
        """Turns a full disk (met now, or by an earlier asynchronous save) into one clear error."""
        try:
            yield
        except Exception as e:
            reason = _disk_full_reason(e)
            if reason is None:
                raise
            self.manager.reload()
            intact = self.steps()
            raise CheckpointWriteError(
                f"a checkpoint save in {self.directory} failed: the disk is full or over quota "
                f"({reason}). Checkpoints already saved are untouched: steps {intact or 'none'}; "
                f"free space and relaunch to resume from {intact[-1] if intact else 'the start'}"
            ) from e

    def restore(self, step: int, abstract_state, config: Mapping[str, Any]):
        """(state, meta) of `step`, verified against the run's config, shapes and hash."""
        where = self.directory / str(step)
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
                "meta"
            ]
        except Exception as e:
            raise CorruptCheckpoint(
                f"checkpoint {where}: its meta item cannot be read ({e})"
            ) from e
        if meta is None:
            raise CorruptCheckpoint(f"checkpoint {where}: its meta item is missing")
        differences = config_differences(meta.get("config", {}), config, keys_added_since=True)
        if differences:
            raise CheckpointMismatch(
                f"checkpoint {where} was written by a different config; refusing to resume:\n  "
                + "\n  ".join(differences)
                + "\nUse another --workdir, or the same config."
            )
        expected = leaf_shapes(abstract_state)
        if meta.get("shapes") != expected:
            saved = meta.get("shapes", {})
            bad = [
                f"{k}: checkpoint {saved.get(k, '<absent>')}, model {expected.get(k, '<absent>')}"
                for k in sorted(set(saved) | set(expected))
                if saved.get(k) != expected.get(k)
            ]
            raise CheckpointMismatch(
                f"checkpoint {where} does not fit the model:\n  " + "\n  ".join(bad)
            )
        try:
            state = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            )["state"]
        except Exception as e:
            raise CorruptCheckpoint(f"checkpoint {where}: the state cannot be read ({e})") from e
        digest = state_digest(state)
        if digest != meta.get("state_sha256"):
            raise CorruptCheckpoint(
                f"checkpoint {where} is corrupt: its arrays hash to {digest[:12]}… but were "
                f"saved as {str(meta.get('state_sha256'))[:12]}…"
            )
        return state, meta

    def restore_newest(self, abstract_state, config: Mapping[str, Any], on_corrupt: str):
        """The newest usable checkpoint, or None in an empty directory.

        `on_corrupt='fail'` raises on a corrupt newest checkpoint; `'fallback'` reports
        it and tries the next older one. A config or shape mismatch always raises.
        """
        if on_corrupt not in ("fail", "fallback"):
            raise ValueError(
                f"config.checkpoint.on_corrupt must be 'fail' or 'fallback', got {on_corrupt!r}"
            )
        for step in reversed(self.steps()):
            try:
                return self.restore(step, abstract_state, config)
            except CorruptCheckpoint as e:
                if on_corrupt == "fail":
                    raise
                quarantined = self._quarantine(step)
                logging.error(
                    "%s -- moved to %s; falling back to an older checkpoint", e, quarantined
                )
        return None

    def _quarantine(self, step: int) -> pathlib.Path:
        """Moves a corrupt step out of the manager's sight, kept for inspection."""
        target = self.directory.parent / "corrupt_checkpoints" / str(step)
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"quarantined checkpoint {step}")
        self.manager.reload()
        return target

    def wait(self) -> None:
        with self._disk_full_reported():
            self.manager.wait_until_finished()

    def close(self) -> None:
        with self._disk_full_reported():
            self.manager.close()


def describe_environment() -> dict[str, Any]:
    """Package versions and git commit, saved beside every checkpoint."""
    import importlib.metadata
    import subprocess

    versions = {}
    for package in (
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "orbax-checkpoint",
        "tensorflow-datasets",
        "numpy",
    ):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
                cwd=pathlib.Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "git_commit": commit}


def to_json(config) -> dict:
    """A config as plain JSON values (tuples become lists), comparable after a round trip."""
    return json.loads(json.dumps(config.to_dict() if hasattr(config, "to_dict") else dict(config)))
