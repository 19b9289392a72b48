"""A finished model on disk, reusable without its data: `save(...)` and `load(workdir)`.

`<workdir>/model/` holds `model.json` (family, resolved config, `meta`: the sizes the data
fixed, such as the number of features or the image shape, and a SHA-256 of the parameters)
and `params/` (an Orbax checkpoint). Loading rebuilds the parameter structure from
`family.init(key, config, meta)` with `jax.eval_shape`, so no dataset is read, and refuses
parameters whose bytes no longer hash to what was saved.
"""

import dataclasses
import importlib
import json
import pathlib
import types
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from genjax_lab.core import checkpoint as checkpoint_lib
from genjax_lab.core import mesh as mesh_lib

MODEL_DIR = "model"
FORMAT = 1

# Family name -> the module that answers to the shared verbs (genjax_lab.api).
FAMILIES = {
    "naive_bayes": "genjax_lab.models.naive_bayes",
    "gmm": "genjax_lab.models.gmm",
    "bayesian_gmm": "genjax_lab.models.gmm.bayesian",
    "hmm": "genjax_lab.models.hmm",
    "lda": "genjax_lab.models.lda",
    "boltzmann": "genjax_lab.models.boltzmann",
    "vae": "genjax_lab.models.vae",
    "gan": "genjax_lab.models.gan",
}


def family_module(name: str) -> types.ModuleType:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return importlib.import_module(FAMILIES[name])


@dataclasses.dataclass(frozen=True)
class Model:
    """A family, its config, the data-fixed sizes and fitted parameters; the verbs bound."""

    family_name: str
    config: ml_collections.ConfigDict
    meta: Mapping[str, Any]
    params: Any

    @property
    def family(self) -> types.ModuleType:
        return family_module(self.family_name)

    def _verb(self, name: str):
        verb = getattr(self.family, name, None)
        if verb is None:
            raise NotImplementedError(f"the {self.family_name} family has no {name}")
        return verb

    def log_prob(self, x, *args, **kwargs):
        return self._verb("log_prob")(self.params, x, *args, **kwargs)

    def log_prob_bound(self, key, x, *args, **kwargs):
        return self._verb("log_prob_bound")(key, self.params, x, *args, **kwargs)

    def log_prob_estimate(self, key, x, *args, **kwargs):
        return self._verb("log_prob_estimate")(key, self.params, x, *args, **kwargs)

    def sample(self, key, num: int, *, y=None, **kwargs):
        return self._verb("sample")(key, self.params, num, y=y, **kwargs)

    def posterior(self, x, *args, **kwargs):
        return self._verb("posterior")(self.params, x, *args, **kwargs)

    def classifier(self):
        """The family's Bayes-rule classifier (genjax_lab.api.BayesClassifier)."""
        return self._verb("classifier")(self.params)


def save(
    directory: str | pathlib.Path,
    family_name: str,
    config: ml_collections.ConfigDict,
    meta: Mapping[str, Any],
    params: Any,
) -> pathlib.Path:
    """Writes `<directory>/model/` (replacing an older one) and returns its path."""
    family_module(family_name)  # refuse an unknown name before writing anything
    target = pathlib.Path(directory).resolve() / MODEL_DIR
    # Host copies: a process's own arrays (a label prior made on each host) cannot be saved
    # as global arrays, and Orbax writes replicated NumPy arrays once, from process 0.
    params = mesh_lib.host_copy(params)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(target / "params", params, force=True)
    record = {
        "format": FORMAT,
        "family": family_name,
        "config": checkpoint_lib.to_json(config),
        "meta": dict(meta),
        "sha256": checkpoint_lib.state_digest(params),
    }
    if jax.process_index() == 0:  # every process saved its share of the parameters above
        (target / "model.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return target


def load(workdir: str | pathlib.Path) -> Model:
    """The model a finished run left in `workdir` (or in `workdir/model`)."""
    directory = pathlib.Path(workdir).resolve()
    if directory.name != MODEL_DIR:
        directory = directory / MODEL_DIR
    record_path = directory / "model.json"
    if not record_path.is_file():
        raise FileNotFoundError(
            f"{directory.parent}: no finished model here (no {MODEL_DIR}/model.json); "
            "a run writes it when it finishes"
        )
    record = json.loads(record_path.read_text())
    if record.get("format") != FORMAT:
        raise checkpoint_lib.CheckpointError(
            f"{record_path}: format {record.get('format')!r}, this code reads {FORMAT}"
        )
    family = family_module(record["family"])
    config = ml_collections.ConfigDict(record["config"])
    abstract = jax.eval_shape(
        lambda key: family.init(key, config, record["meta"]), jax.random.key(0)
    )
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            params = checkpointer.restore(directory / "params", abstract)
    except Exception as error:  # Orbax raises many kinds for a damaged folder
        raise checkpoint_lib.CorruptCheckpoint(f"{directory / 'params'}: {error}") from error
    if checkpoint_lib.state_digest(params) != record["sha256"]:
        raise checkpoint_lib.CorruptCheckpoint(
            f"{directory / 'params'}: the parameters do not hash to what was saved"
        )
    return Model(record["family"], config, record["meta"], params)
