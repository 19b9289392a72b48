"""Experiment entry points: absl flags `--config` (with `file.py:variant` and
`--config.key=value` overrides) and `--workdir`; clean errors for bad input."""
import json
import os
import pathlib
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

from genjax_lab.core import checkpoint as ckpt_lib
from genjax_lab.core import loop as loop_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib


def define_flags(default_config: str, default_workdir: str, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """`--config` (default: `default_config`, relative to the repository) and `--workdir`.

    Defined once per process: a test or benchmark that imports several experiment scripts
    as modules (their flags unused) gets the first script's flags, not a DuplicateFlagError.
    """
    if "config" in flag_values:
        return
    config_flags.DEFINE_config_file(
        "config", str(_REPO / default_config), "Config file[:variant]; override keys with --config.KEY=VALUE.",
        lock_config=True, flag_values=flag_values,
    )
    flags.DEFINE_string("workdir", default_workdir, "Where checkpoints, metrics and images go.", flag_values=flag_values)


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Parses argv (sys.argv: ml_collections reads the config overrides from there) into
    flag_values; returns the arguments left. Every refusal is a ValueError that names the
    flag: absl's own (an unknown flag; `--config.seed=abc`, a value of the wrong type,
    quoted with its flag) and an override of a key the config lacks, which ml_collections
    reports as a bare AttributeError or KeyError holding only the missing field's name."""
    overrides = [arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith(("--config.", "-config."))]
    try:
        return flag_values(argv)
    except flags.Error as e:
        raise ValueError(str(e)) from None
    except (AttributeError, KeyError) as e:
        if not overrides:  # not an override's fault (e.g. a bug in the config file): keep the traceback
            raise
        missing = str(e).strip("'\"")
        named = [flag for flag in overrides if missing in flag.split(".")[1:]] or overrides
        raise ValueError(f"{', '.join(named)}: no such key in the config ({missing})") from None
    except ValueError as e:
        # An override path that is not a Python attribute path (e.g. `--config.or`, a
        # keyword): ml_collections quotes the path, not the flag.
        named = [flag for flag in overrides if repr(flag.split(".", 1)[1]) in str(e)]
        if not named:
            raise
        raise ValueError(f"{', '.join(named)}: {e}") from None


def _parse_flags_or_exit(argv: list[str]) -> list[str]:
    try:
        return parse_flags(argv)
    except ValueError as e:
        print(f"error: bad flag: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


_REPO = pathlib.Path(__file__).resolve().parents[2]


def kind_main(kinds: Mapping[str, Callable[[Any, pathlib.Path], Mapping[str, float]]]) -> Callable[[Any, pathlib.Path], None]:
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
    loop_lib.NonFiniteError,
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
    """absl's app.run around `main(config, workdir)`, turning bad flags and user errors into
    exit 2 with a one-line message."""

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # Orbax logs every file at INFO
        config, workdir = flags.FLAGS.config, pathlib.Path(flags.FLAGS.workdir)
        try:
            mesh_lib.initialize_distributed()
            main(config, workdir)
        except USER_ERRORS as e:
            logging.error("%s: %s", type(e).__name__, e)
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            exit_now(2)

    app.run(_main, flags_parser=_parse_flags_or_exit)
