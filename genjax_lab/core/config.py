"""Experiment entry points: absl flags `--config` (with `file.py:variant` and
`--config.key=value` overrides) and `--workdir`, the config's counts validated, and bad
input reported in one line with exit code 2."""

import json
import numbers
import os
import pathlib
import re
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from genjax_lab.core import checkpoint as ckpt_lib
from genjax_lab.core import checks
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib

_DEFAULT_CONFIGS: "weakref.WeakKeyDictionary[flags.FlagValues, str]" = weakref.WeakKeyDictionary()
_CONFIG_FLAG = re.compile(r"^--?config(=|$)")


def beside(script: str, relative: str) -> str:
    """`relative` (a config `file[:variant]`) taken from the folder of `script` (an
    experiment's `__file__`): a checkout runs its own configs, even where the installed
    genjax_lab is another checkout's."""
    return str(pathlib.Path(script).resolve().parent / relative)


def define_flags(
    default_config: str, default_workdir: str, flag_values: flags.FlagValues = flags.FLAGS
) -> None:
    """`--config` (default: `default_config`, a file[:variant]) and `--workdir`.

    The default is read when the flags are parsed, not here: ml_collections would load it
    (with every `--config.KEY` override of sys.argv) when the flag is defined, on import,
    where a misspelled key could only end in a traceback. Defined once per process: a test
    or benchmark that imports several experiment scripts as modules (their flags unused)
    gets the first script's flags, not a DuplicateFlagError.
    """
    if "config" in flag_values:
        return
    config_flags.DEFINE_config_file(
        "config",
        None,
        f"Config file[:variant] (default {default_config}); override keys with --config.KEY=VALUE.",
        lock_config=True,
        flag_values=flag_values,
    )
    _DEFAULT_CONFIGS[flag_values] = default_config
    flags.DEFINE_string(
        "workdir",
        default_workdir,
        "Where checkpoints, metrics and images go.",
        flag_values=flag_values,
    )


def _config_value(argv: list[str]) -> str | None:
    """The value of `--config` in argv (`--config=V` or `--config V`), or None."""
    for i, arg in enumerate(argv):
        match = _CONFIG_FLAG.match(arg)
        if match and match.group(1):
            return arg[match.end() :]
        if match:
            return argv[i + 1] if i + 1 < len(argv) else ""
    return None


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Parses argv (sys.argv: ml_collections reads the config overrides from there) into
    flag_values, with `--config` at its default where argv has none; returns the arguments
    left. Every refusal is a one-line ValueError that names the flag: absl's own (an
    unknown flag; `--config.seed=abc`, a value of the wrong type, quoted with its flag), a
    config file that is not there, a ValueError of the config file's `get_config` (an
    unknown variant), and an override of a key the config lacks, which ml_collections
    reports as a bare AttributeError or KeyError holding only the missing field's name."""
    config = _config_value(argv[1:])
    if config is None and flag_values in _DEFAULT_CONFIGS:
        config = _DEFAULT_CONFIGS[flag_values]
        argv = [argv[0], f"--config={config}", *argv[1:]]
    if config is not None and not pathlib.Path(config.split(":", 1)[0]).is_file():
        file = pathlib.Path(config.split(":", 1)[0])
        where = "" if file.is_absolute() else f" (relative to {pathlib.Path.cwd()})"
        raise ValueError(f"--config={config}: no such config file{where}")
    overrides = [
        arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith(("--config.", "-config."))
    ]
    try:
        return flag_values(argv)
    except flags.Error as e:
        raise ValueError(_config_file_error(e, config) or str(e)) from None
    except (AttributeError, KeyError) as e:
        if (
            not overrides
        ):  # not an override's fault (e.g. a bug in the config file): keep the traceback
            raise
        # ml_collections wraps a KeyError whose message is the quoted key, then maybe a
        # line 'Did you mean "num_restarts" instead of "num_restart"?'
        cause = e
        while cause.args and isinstance(cause.args[0], BaseException):
            cause = cause.args[0]
        missing, _, suggestion = str(cause.args[0] if cause.args else cause).partition("\n")
        missing = missing.strip("'\"")
        named = [flag for flag in overrides if missing in flag.split(".")[1:]] or overrides
        hint = f"; {suggestion[0].lower()}{suggestion[1:]}" if suggestion else ""
        message = f"{', '.join(named)}: no such key in the config ({missing}){hint}"
        raise ValueError(message) from None
    except ValueError as e:
        # An override path that is not a Python attribute path (e.g. `--config.or`, a
        # keyword): ml_collections quotes the path, not the flag.
        named = [flag for flag in overrides if repr(flag.split(".", 1)[1]) in str(e)]
        if not named:
            raise
        raise ValueError(f"{', '.join(named)}: {e}") from None


def _config_file_error(error: flags.Error, config: str | None) -> str | None:
    """`--config=FILE: message` for a ValueError raised by the config file's get_config (an
    unknown variant), whose message ml_collections buries in a formatted traceback; None
    for any other flag error."""
    cause = error.__context__
    if config is None or cause is None or "Error whilst parsing config file" not in str(cause):
        return None
    while cause.__context__ is not None:  # ml_collections re-raises the file's own error
        cause = cause.__context__
    if type(cause) is not ValueError:  # a TypeError is more likely a bug: keep its traceback
        return None
    return f"--config={config}: {cause}"


def _parse_flags_or_exit(argv: list[str]) -> list[str]:
    try:
        return parse_flags(argv)
    except ValueError as e:
        print(f"error: bad flag: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


# Every integer in a config, alone or in a tuple of them (layer widths, sizes), is a count,
# at least 1, except the keys below (a dotted path's tail or a key's name), where 0 has a
# meaning. `num_steps` beside `num_epochs` also takes -1: train for num_epochs epochs.
COUNT_MINIMUMS: dict[str, int] = {
    "seed": 0,
    "eval_every": 0,  # evaluate at the end only
    "profile.num_steps": 0,  # no trace
    "start_step": 0,
    "max_docs": 0,  # no limit: every document
    "max_size": 0,
    "max_vocab": 0,
    "max_examples": 0,
    "max_test": 0,
    "nll_samples": 0,  # no final estimate
    "nll_examples": 0,  # every test image
    "classify_samples": 0,  # no classification by Bayes' rule
    "parzen_samples": 0,  # no Parzen estimate
    "num_chains": 0,  # batch_size persistent chains
    "d_maxout_pieces": 0,  # LeakyReLU layers, not maxout
    "exact_max_bits": 0,  # log Z by AIS only, never enumerated
    "iaf_steps": 0,  # a Gaussian posterior, no flow
    "warmup_steps": 0,  # the KL at full weight from the first step
    "steps_per_call": 0,  # the family's own choice
}


def _count_minimum(path: str) -> int:
    for tail, minimum in COUNT_MINIMUMS.items():
        if path.endswith("." + tail):
            return minimum
    return 1


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def validate_config(config: ml_collections.ConfigDict, prefix: str = "config") -> None:
    """Refuses a count below its minimum (COUNT_MINIMUMS) with a ValueError naming the key,
    e.g. `config.model.num_states must be >= 1, got 0`: one check for every experiment, run
    before anything is built or written, rather than an error deep inside the run that
    names no key."""
    for key, value in config.items():
        path = f"{prefix}.{key}"
        if isinstance(value, ml_collections.ConfigDict):
            validate_config(value, path)
        elif key == "num_steps" and value == -1 and "num_epochs" in config:
            epochs = config.num_epochs
            if epochs is None or not epochs > 0:
                raise ValueError(
                    f"{path}=-1 needs {prefix}.num_epochs > 0 (it trains for that "
                    f"many epochs), got {epochs}"
                )
        elif _is_integer(value):
            checks.check_count(path, value, _count_minimum(path))
        elif isinstance(value, (tuple, list)) and value and all(_is_integer(v) for v in value):
            checks.check_counts(path, value, _count_minimum(path))


def kind_main(
    kinds: Mapping[str, Callable[[Any, pathlib.Path], Mapping[str, float]]],
) -> Callable[[Any, pathlib.Path], None]:
    """main(config, workdir) of a script whose experiments are picked by `config.kind`: runs
    `kinds[config.kind](config, workdir) -> metrics` and writes them, with wall_seconds, to
    summary.json (for short fits that need no checkpoints)."""

    def main(config, workdir: pathlib.Path) -> None:
        if config.kind not in kinds:
            raise ValueError(f"config.kind must be one of {sorted(kinds)}, got {config.kind!r}")
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        summary = {k: float(v) for k, v in kinds[config.kind](config, workdir).items()}
        summary["wall_seconds"] = time.perf_counter() - start
        metrics_lib.write_summary(workdir, summary)
        metrics_lib.say(json.dumps(summary, indent=1, sort_keys=True))

    return main


# Errors that mean bad input or an unusable run, reported in one line without a traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    KeyError,
    ckpt_lib.CheckpointError,
    checks.NonFiniteError,
    mesh_lib.DistributedStartError,
)


def exit_now(code: int) -> None:
    """Exits; in a JAX cluster without the exit barrier, which would wait for peers that
    may never arrive (they are still training, or dead)."""
    import jax

    if jax.process_count() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run(main: Callable[[object, pathlib.Path], object]) -> None:
    """absl's app.run around `main(config, workdir)`, turning bad flags, a config that fails
    `validate_config` (checked before main builds or writes anything) and user errors into
    exit 2 with a one-line message."""

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # Orbax logs every file at INFO
        config, workdir = flags.FLAGS.config, pathlib.Path(flags.FLAGS.workdir)
        try:
            validate_config(config)
            mesh_lib.initialize_distributed()
            main(config, workdir)
        except USER_ERRORS as e:
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            exit_now(2)

    app.run(_main, flags_parser=_parse_flags_or_exit)
