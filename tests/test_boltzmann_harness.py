"""The Boltzmann family through the harness, as real processes: a tiny run leaves its grids
and a summary whose AIS log Z matches enumeration; a run killed with SIGKILL resumes
bitwise, persistent chains included; and the family's step on 8 devices equals 1 device."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.configs import boltzmann_mnist
from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.models import boltzmann as bm
from tests.helpers import assert_ok, final_state, kill_after_checkpoint, process_env, run_experiment

TINY = "boltzmann_mnist.py:tiny"


@pytest.fixture(scope="module")
def run_env(tmp_path_factory):
    return process_env(tmp_path_factory.mktemp("tfds"))


FLAGS = ("--config.checkpoint.every=2", "--config.log_every=2")


@pytest.fixture(scope="module")
def reference(run_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    assert_ok(run_experiment(run_env, "boltzmann", TINY, workdir, *FLAGS))
    return workdir


def test_tiny_run_writes_grids_and_a_finite_log_likelihood(reference):
    images = {p.name.split("_0")[0] for p in (reference / "images").glob("*.png")}
    assert images == {"samples", "filters", "chains"}
    summary = json.loads((reference / "summary.json").read_text())
    assert np.isfinite(summary["test_log_likelihood"])
    # 64 binary pixels: log p(v) lies between -64 log 2 = -44.4 and 0 nats; measured -27.1
    assert -44.4 < summary["test_log_likelihood"] < -15.0
    # AIS (2,000 temperatures, 16 runs) against enumeration of the 16 hidden units: measured
    # 0.003 apart
    assert abs(summary["log_z_ais"] - summary["log_z_exact"]) < 0.1, summary


def resume_matches(run_env, config, reference, workdir):
    """Kill -9 past the middle; the relaunch must end with the same state hash (params,
    momentum, persistent chains, step) and the same metrics records, AIS included."""
    killed_at = kill_after_checkpoint(run_env, "boltzmann", config, workdir, 30, *FLAGS)
    assert killed_at < 60
    resumed = run_experiment(run_env, "boltzmann", config, workdir, *FLAGS)
    assert_ok(resumed)
    assert "resumed from" in resumed.stdout
    assert final_state(workdir) == final_state(reference)


def test_resume_after_sigkill_is_bitwise_exact_chains_included(run_env, reference, tmp_path):
    resume_matches(run_env, TINY, reference, tmp_path)


@pytest.mark.slow
def test_dbm_resume_inside_pretraining_is_bitwise_exact(run_env, tmp_path):
    """Killed inside greedy pretraining (phases switch at steps 22 and 44 of 60). ~90 s."""
    config = "boltzmann_mnist.py:dbm,tiny"
    assert_ok(run_experiment(run_env, "boltzmann", config, tmp_path / "reference", *FLAGS))
    resume_matches(run_env, config, tmp_path / "reference", tmp_path / "killed")


def tiny_family(variant: str):
    config = boltzmann_mnist.get_config(variant)
    rng = np.random.default_rng(0)
    images = (rng.random((64, 8, 8, 1)) < 0.3).astype(np.uint8) * 255
    dataset = data_lib.Dataset({"train": {"image": images}})
    return bm.family_for(config, dataset), images


@pytest.mark.parametrize(
    "variant", ["rbm_cd25,tiny", pytest.param("dbm,tiny", marks=pytest.mark.slow)]
)
def test_family_step_on_8_devices_equals_1_device(variant):
    """The step the loop compiles (k schedule, DBM phase switch, shard_map) on the 8-device
    mesh against the same step on one device: chains equal, parameters to 1e-6."""
    assert jax.device_count() == 8
    family, images = tiny_family(variant)
    mask = np.ones(32, np.float32)
    mask[-3:] = 0.0
    batch = {"image": images[:32], "mask": mask}
    one = mesh_lib.data_mesh(jax.devices()[:1])
    eight = mesh_lib.data_mesh()
    results = []
    for mesh in (one, eight):
        step = jax.jit(lambda s, b, k: family.train_step(s, b, k))  # a fresh trace for each mesh
        state = jax.jit(family.init)(jax.random.key(0), batch)
        if family.is_dbm:  # into the joint phase, where the persistent chains move
            state = state.replace(step=jnp.int32(2 * family.pretrain_steps))
        state = jax.device_put(state, NamedSharding(mesh, P()))
        sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(mesh_lib, "data_mesh", lambda mesh=mesh: mesh)
            for i in range(3):
                state, _ = step(state, sharded, jax.random.key(i))
        results.append(jax.device_get(state))
    single, many = results
    jax.tree.map(np.testing.assert_array_equal, many.chains, single.chains)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), many.params, single.params
    )
    assert int(many.step) == int(single.step)
