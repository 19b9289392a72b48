"""The command line as a new user meets it: each bad input ends in exit code 2 and one line
on stderr naming the flag, key, file or folder at fault, never a traceback or a hang.

The end-to-end cases start real processes (`./launch.sh`, `python experiments/x.py`); each
costs seconds of imports, so one module fixture runs them all at once and the tests read
their outcomes. The mechanisms behind them (flag parsing, config validation, data checks)
are also tested in process, where a case costs milliseconds.
"""

import concurrent.futures
import dataclasses
import functools
import hashlib
import http.server
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from unittest import mock

import jax
import ml_collections
import numpy as np
import optax
import pytest
from absl import flags
from hypothesis import given
from hypothesis import strategies as st

from genjax_lab.core import config as config_lib
from genjax_lab.core import replication as rep
from genjax_lab.data import builders, idx, images
from genjax_lab.models import boltzmann
from tests.helpers import REPO, process_env
from tests.test_fuzz import FUZZ

CONFIGS = REPO / "experiments" / "configs"
# A closed local port as the proxy: every download fails at once, as on a machine offline.
_OFFLINE = {
    name: "http://127.0.0.1:9"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
}


@dataclasses.dataclass(frozen=True)
class Case:
    command: tuple[str, ...]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cwd: pathlib.Path = REPO
    timeout_s: float = 120


@dataclasses.dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: still running at the timeout (killed)
    stdout: str
    stderr: str
    seconds: float


def _launch(*args: str) -> tuple[str, ...]:
    return (str(REPO / "launch.sh"), *args)


def _script(experiment: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, str(REPO / "experiments" / f"{experiment}.py"), *args)


def _other_checkout(root: pathlib.Path) -> pathlib.Path:
    """A second checkout sharing this environment, whose vae_digits config has one key more
    and whose genjax_lab announces itself on import."""
    for name in ("genjax_lab", "experiments"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("launch.sh", "pyproject.toml"):
        shutil.copy2(REPO / name, root / name)
    config = root / "experiments" / "configs" / "vae_digits.py"
    config.write_text(
        config.read_text().replace(
            "    return config\n", "    config.checkout_marker = 1\n    return config\n"
        )
    )
    package = root / "genjax_lab" / "__init__.py"
    package.write_text(
        package.read_text()
        + "\nimport sys as _sys\nprint('genjax_lab from', __file__, file=_sys.stderr)\n"
    )
    return root


def _installed_stamp() -> pathlib.Path:
    """The file by which launch.sh knows this environment holds the project as pyproject.toml
    now describes it."""
    digest = hashlib.sha1((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    return pathlib.Path(sys.prefix) / f".genjax_lab-installed-{digest}-core"


def _run(case: Case, base_env: dict[str, str]) -> Outcome:
    start = time.perf_counter()
    try:
        result = subprocess.run(
            case.command,
            env={**base_env, **case.env},
            cwd=case.cwd,
            capture_output=True,
            text=True,
            timeout=case.timeout_s,
            check=False,
        )
        return Outcome(result.returncode, result.stdout, result.stderr, time.perf_counter() - start)
    except subprocess.TimeoutExpired as e:

        def text(raw):
            return raw.decode(errors="replace") if isinstance(raw, bytes) else raw or ""

        return Outcome(None, text(e.stdout), text(e.stderr), time.perf_counter() - start)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def outcomes(tmp) -> dict[str, Outcome]:
    (tmp / "empty").mkdir()
    mnist = f"--config={CONFIGS}/vae_mnist.py:tiny"
    cases = {
        "misspelled_key_default_config": Case(
            _launch("vae", "--config.model.no_such_key=3", f"--workdir={tmp / 'w0'}")
        ),
        "misspelled_key_hmm": Case(
            _launch("hmm", "--config.model.num_restart=3", f"--workdir={tmp / 'w1'}")
        ),
        "missing_config_file": Case(
            _launch("vae", "--config=experiments/configs/nope.py", f"--workdir={tmp / 'w2'}")
        ),
        "unknown_variant": Case(
            _launch(
                "vae", "--config=experiments/configs/vae_digits.py:nope", f"--workdir={tmp / 'w3'}"
            )
        ),
        "empty_mnist_dir": Case(
            _script(
                "vae", mnist, f"--config.data.mnist_dir={tmp / 'empty'}", f"--workdir={tmp / 'w4'}"
            )
        ),
        "offline_mnist": Case(
            _script("vae", mnist, f"--workdir={tmp / 'w5'}"), env=_OFFLINE, timeout_s=90
        ),
        "zero_restarts": Case(
            _launch("hmm", "--config.model.num_restarts=0", f"--workdir={tmp / 'w6'}")
        ),
        "zero_states": Case(
            _script(
                "hmm",
                f"--config={CONFIGS}/hmm_fsdd.py",
                "--config.model.num_states=0",
                f"--workdir={tmp / 'w7'}",
            )
        ),
        "refused_config_leaves_no_json": Case(
            _launch(
                "vae", "--config.num_steps=-1", "--config.num_epochs=0", f"--workdir={tmp / 'w8'}"
            )
        ),
    }
    if _installed_stamp().is_file():  # else launch.sh would install the copy into this environment
        other = _other_checkout(tmp / "other")
        cases["other_checkout"] = Case(
            (
                str(other / "launch.sh"),
                "vae",
                "--config.checkout_marker=2",
                "--config.batch_size=0",
                f"--workdir={tmp / 'w9'}",
            ),
            cwd=tmp,
        )
    env = process_env(tmp / "tfds")
    env["VIRTUAL_ENV"] = sys.prefix
    for name in ("NO_PROXY", "no_proxy"):
        env.pop(name, None)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(_run, case, env) for name, case in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def assert_refused(
    outcome: Outcome | subprocess.CompletedProcess, *named: str, extra_lines: int = 0
) -> str:
    """Exit 2 and one line on stderr (`error: ...`) naming every string in `named`; returns
    the line. extra_lines: lines expected before it."""
    report = f"exit {outcome.returncode}\n{outcome.stderr[-3000:]}"
    assert outcome.returncode == 2, report
    lines = outcome.stderr.strip().splitlines()
    assert "Traceback" not in outcome.stderr and len(lines) == 1 + extra_lines, report
    line = lines[-1]
    assert line.startswith("error: "), report
    for name in named:
        assert name in line, f"{name!r} not named\n{report}"
    return line


def test_misspelled_key_with_the_default_config(outcomes):
    assert_refused(outcomes["misspelled_key_default_config"], "--config.model.no_such_key")
    line = assert_refused(outcomes["misspelled_key_hmm"], "--config.model.num_restart")
    hint = 'did you mean "num_restarts" instead of "num_restart"?'  # ml_collections' own
    assert line.endswith(hint)


def test_missing_config_file_and_unknown_variant(outcomes):
    assert_refused(outcomes["missing_config_file"], "--config", "experiments/configs/nope.py")
    assert_refused(outcomes["unknown_variant"], "--config", "unknown variant 'nope'")


def test_empty_mnist_folder_is_named(outcomes, tmp):
    empty = tmp / "empty"
    line = assert_refused(outcomes["empty_mnist_dir"], "config.data.mnist_dir", str(empty))
    assert "train-images-idx3-ubyte" in line


def test_mnist_offline_fails_fast_and_says_how_to_read_local_files(outcomes):
    """Before, TFDS retried the download for minutes without a word (the case's timeout)."""
    assert_refused(outcomes["offline_mnist"], "config.data.name='mnist'", "--config.data.mnist_dir")


def test_zero_counts_name_the_key(outcomes):
    assert_refused(outcomes["zero_restarts"], "config.model.num_restarts", ">= 1")
    assert_refused(outcomes["zero_states"], "config.model.num_states", ">= 1")


def test_a_refused_config_leaves_no_config_json(outcomes, tmp):
    assert_refused(
        outcomes["refused_config_leaves_no_json"], "config.num_steps", "config.num_epochs"
    )
    assert not (tmp / "w8" / "config.json").exists()


def test_each_checkout_runs_its_own_configs_and_code(outcomes, tmp):
    """Two checkouts share one environment (installed from this one): the other checkout's
    launch.sh reads its own default config (with its extra key) and imports its own code."""
    if "other_checkout" not in outcomes:
        pytest.skip(
            f"no {_installed_stamp()}: launch.sh would install the copy into this environment"
        )
    outcome = outcomes["other_checkout"]
    other = tmp / "other"
    assert f"genjax_lab from {other / 'genjax_lab' / '__init__.py'}" in outcome.stderr
    assert_refused(outcome, "config.batch_size", extra_lines=1)


# ----------------------------------------------------------------------------- in process


def _parse(argv: list[str], default: str = f"{CONFIGS}/vae_digits.py:tiny") -> flags.FlagValues:
    """`define_flags` (as an experiment does on import) and `parse_flags`, on fresh flags."""
    flag_values = flags.FlagValues()
    with mock.patch.object(sys, "argv", ["experiment.py", *argv]):
        config_lib.define_flags(default, "runs/test", flag_values)
        config_lib.parse_flags(sys.argv, flag_values)
    return flag_values


def test_default_config_is_read_at_parse_time_with_its_overrides():
    assert _parse(["--config.model.latent_dim=7"]).config.model.latent_dim == 7
    with pytest.raises(ValueError, match=r"^--config\.model\.no_such_key: no such key"):
        _parse(["--config.model.no_such_key=3"])
    with pytest.raises(ValueError, match=r"--config=.*nowhere\.py"):
        _parse([], default=f"{CONFIGS}/nowhere.py")


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIGS.glob("*.py") if p.stem != "__init__"), ids=lambda p: p.stem
)
def test_an_unknown_variant_of_any_config_file_is_one_line(path):
    with pytest.raises(
        ValueError, match=rf"^--config={re.escape(str(path))}:zz_nope: [^\n]*zz_nope[^\n]*$"
    ):
        _parse([f"--config={path}:zz_nope"])


def _config_files() -> dict[str, ml_collections.ConfigDict]:
    """Every config the project ships: each config file's default and the variants the
    experiments default to, and every replication's runs on every schedule."""
    configs = {}
    for path in sorted(CONFIGS.glob("*.py")):
        if path.stem != "__init__":
            configs[path.stem] = rep.load_module(path).get_config()
    for name, variant in (
        ("vae_digits", "tiny"),
        ("boltzmann_mnist", "tiny"),
        ("gan_mnist", "tiny_mlp"),
        ("vae_mnist", "tiny"),
        ("vae_digits", "vae"),
    ):
        configs[f"{name}:{variant}"] = rep.load_module(CONFIGS / f"{name}.py").get_config(variant)
    for name in rep.names():
        replication, module = rep.load(name)
        for schedule in rep.SCHEDULES:
            for run in rep.runs_for(replication, module, schedule):
                configs[f"{name}:{run},{schedule}"] = module.get_config(
                    replication.config_arg(run, schedule)
                )
    return configs


@functools.cache
def _shipped_configs() -> dict[str, ml_collections.ConfigDict]:
    return _config_files()


def test_every_shipped_config_passes_validation():
    for config in _shipped_configs().values():
        config_lib.validate_config(config)  # raises, naming the key, if not


def _count_keys(config: ml_collections.ConfigDict, prefix: str = "config") -> list[str]:
    keys = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += _count_keys(value, f"{prefix}.{key}")
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            keys.append(f"{prefix}.{key}")
    return keys


_COUNTS = sorted(
    {
        (name, key)
        for name, config in _shipped_configs().items()
        for key in _count_keys(config)
        if not key.endswith(("num_steps", ".seed"))
    }
)


@FUZZ
@given(case=st.sampled_from(_COUNTS), value=st.integers(-3, 0))
def test_a_count_below_one_is_refused_by_name(case, value):
    """Every integer of every shipped config that is >= 1 there is a count: 0 or below is
    refused naming the key, unless the key's own table entry gives 0 a meaning."""
    name, key = case
    config = ml_collections.ConfigDict(_shipped_configs()[name].to_dict())
    parent, leaf = key.split(".")[1:-1], key.rsplit(".", 1)[1]
    section = functools.reduce(getattr, parent, config)
    section[leaf] = value
    minimum = config_lib.COUNT_MINIMUMS.get(leaf, 1)
    if value >= minimum:
        config_lib.validate_config(config)
        return
    with pytest.raises(ValueError, match=rf"^{key} must be >= {minimum}"):
        config_lib.validate_config(config)


def test_count_sequences_and_the_num_steps_sentinel():
    config = ml_collections.ConfigDict(_shipped_configs()["vae_digits:tiny"].to_dict())
    config.model.encoder_hidden = (32, 0)
    with pytest.raises(ValueError, match=r"^config\.model\.encoder_hidden\[1\] must be >= 1"):
        config_lib.validate_config(config)
    config.model.encoder_hidden = (32,)
    config.num_steps, config.num_epochs = -1, 2.0
    config_lib.validate_config(config)  # -1: train for num_epochs
    config.num_epochs = 0.0
    with pytest.raises(ValueError, match=r"^config\.num_steps=-1 needs config\.num_epochs > 0"):
        config_lib.validate_config(config)
    config.num_steps = 0
    with pytest.raises(ValueError, match=r"^config\.num_steps must be >= 1"):
        config_lib.validate_config(config)


def test_mnist_folder_missing_a_file_names_it(tmp_path):
    for stem in idx.MNIST_FILES["train"] + idx.MNIST_FILES["test"][:1]:
        (tmp_path / f"{stem}.gz").write_bytes(b"")
    data = images.image_data_config("mnist", "dynamic", tfds_dir=str(tmp_path / "tfds"))
    data.mnist_dir = str(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"config\.data\.mnist_dir=.*t10k-labels-idx1-ubyte"
    ):
        images.load_images(data)


def test_reachable_is_bounded_by_its_timeout(monkeypatch):
    """A server that answers (even 404) is reachable; a closed port is not, at once; an
    address that never answers is given up after the timeout."""
    for name in _OFFLINE:
        monkeypatch.delenv(name, raising=False)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert builders.reachable(f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
    start = time.perf_counter()
    assert not builders.reachable("http://127.0.0.1:9/")
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connects, never answers
        assert not builders.reachable(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout_s=0.5)
    assert time.perf_counter() - start < 5


def test_rbm_step_refuses_an_array_for_its_batch():
    params = boltzmann.init_rbm(jax.random.key(0), 6, 3)
    optimizer = optax.sgd(0.1)
    step = boltzmann.make_rbm_step(optimizer, method="cd")
    x = np.zeros((4, 6), np.float32)
    with pytest.raises(TypeError, match=r"^batch must be a mapping with keys 'mask', 'x'"):
        step(params, optimizer.init(params), x, x, jax.random.key(1))
    with pytest.raises(TypeError, match=r"^batch must be a mapping .* got keys \['x'\]"):
        step(params, optimizer.init(params), x, {"x": x}, jax.random.key(1))
