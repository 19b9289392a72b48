"""Runs the benchmark scripts, each against its reference library, and regenerates the report.

  ./launch.sh bench                 # all: vae gan hmm gmm naive_bayes lda boltzmann cold
  ./launch.sh bench hmm lda --data_dir=/data
  ./launch.sh bench cold            # fresh process to fitted model, empty and warm
                                    # compilation cache

Each benchmark runs as its own process (`python -m benchmarks.<name> --out ...`) and leaves
`<workdir>/<name>/result.json`: one record per measurement (ours_s, reference, its version,
reference_s, speedup = reference_s / ours_s) plus the command, wall time and hardware. The
benchmarks that read MNIST get `--mnist_dir=<data_dir>/mnist`, the HMM one
`--fsdd_path=<data_dir>/fsdd/recordings.tar.gz`, the cold-start one `--data_dir=<data_dir>`.
"""

import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

from absl import app, flags

from genjax_lab import report

NAMES = ("vae", "gan", "hmm", "gmm", "naive_bayes", "lda", "boltzmann", "cold", "pipeline")
READS_MNIST = ("vae", "gan", "naive_bayes", "boltzmann", "pipeline")

_WORKDIR = flags.DEFINE_string("workdir", "runs/bench", "Where each benchmark's result.json goes.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    os.environ.get("GENJAX_DATA_DIR"),
    "Folder holding mnist/ (default $GENJAX_DATA_DIR, else ../shared/data beside the repository).",
)
_REPORT = flags.DEFINE_string("report", "docs/results.md", "Report to regenerate ('' for none).")
_REPLICATE_ROOT = flags.DEFINE_string(
    "replicate_root",
    "runs/replicate",
    "Replication results (<schedule>/<name>/result.json) the report includes.",
)
_README = flags.DEFINE_string(
    "readme", "README.md", "README whose headline rows are regenerated ('' for none)."
)


def _command(name: str, out: pathlib.Path, data_dir: pathlib.Path) -> list[str]:
    command = [sys.executable, "-m", f"benchmarks.{name}", f"--out={out}"]
    if name in READS_MNIST:
        command.append(f"--mnist_dir={data_dir / 'mnist'}")
    if name == "hmm":
        command.append(f"--fsdd_path={data_dir / 'fsdd' / 'recordings.tar.gz'}")
    if name == "cold":
        command.append(f"--data_dir={data_dir}")
    return command


def main(argv: list[str]) -> None:
    names = argv[1:] or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise app.UsageError(f"unknown benchmark(s) {unknown}; known: {' '.join(NAMES)}")
    data_dir = pathlib.Path(_DATA_DIR.value or report.REPO.parent / "shared" / "data").resolve()
    failed = []
    for name in names:
        workdir = pathlib.Path(_WORKDIR.value).resolve() / name
        workdir.mkdir(parents=True, exist_ok=True)
        out = workdir / "records.json"
        command = _command(name, out, data_dir)
        print(f"bench {name}: {shlex.join(command)}", flush=True)
        start = time.perf_counter()
        with open(workdir / "bench.log", "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=report.REPO)
        wall = time.perf_counter() - start
        if code != 0 or not out.is_file():
            print(
                f"bench {name}: FAILED (exit code {code}); see {workdir / 'bench.log'}", flush=True
            )
            failed.append(name)
            continue
        records = json.loads(out.read_text())["records"]
        result = {
            "name": name,
            "command": f"./launch.sh bench {name}",
            "wall_s": wall,
            "hardware": report.hardware(),
            "records": records,
        }
        (workdir / "result.json").write_text(json.dumps(result, indent=1))
        for r in records:
            print(
                f"    {r['name']}: {r['speedup']:.2f}x over "
                f"{r['reference']} {r['reference_version']}",
                flush=True,
            )
    if _REPORT.value:
        report.write(
            pathlib.Path(_REPORT.value),
            replicate_root=pathlib.Path(_REPLICATE_ROOT.value),
            bench_root=pathlib.Path(_WORKDIR.value),
            readme=pathlib.Path(_README.value) if _README.value else None,
        )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
