#!/usr/bin/env bash
# One entry point: a laptop, N processes forming one JAX cluster on this machine, or SLURM.
#SBATCH --job-name=genjax_lab
#SBATCH --requeue
#SBATCH --signal=TERM@120
#SBATCH --output=slurm-%j.out
set -euo pipefail

usage() {
  cat <<'TXT'
usage:
  ./launch.sh <experiment> [flags...]                  run experiments/<experiment>.py here
  ./launch.sh --processes N <experiment> [flags...]    N processes on this machine, one JAX cluster
  sbatch [-n N] launch.sh <experiment> [flags...]      under SLURM: one process per task (srun)
  ./launch.sh test [pytest args...]                    the test suite
  ./launch.sh lint [ruff args...]                      ruff check (rules pinned in pyproject.toml), then
                                                       ruff format --check; fails if either fails
  ./launch.sh reliability [pytest args...]             every fault-injection and fuzz test, 20 trials
                                                       per family, into docs/reliability.md
  ./launch.sh replicate [NAME...] [--schedule=quick|full|tiny] [--data_dir=DIR]
                                                       the paper replications, checked, into docs/results.md
  ./launch.sh bench [NAME...] [--data_dir=DIR]         each family against its reference library
  ./launch.sh zoo [--schedule=tiny|quick|full] [--data_dir=DIR]
                                                       every family on the same binarized digits,
                                                       one table and figures, into docs/zoo.md
  ./launch.sh sample --workdir=W [--label=Y] [--num=N] [--out=FILE]
                                                       new data from a finished run's model
  ./launch.sh classify --workdir=W --input=F           Bayes-rule labels of the inputs in F
  ./launch.sh score --workdir=W --input=F              log p(x) in nats (or its bound/estimate)
  sbatch --array=0-8 launch.sh replicate --schedule=full   one replication per array task

Flags go to the experiment untouched: --config=FILE[:variant], --config.key=value,
--workdir=DIR (default runs/<experiment>/). The first run creates .venv and installs the
project, unless a virtualenv or conda environment is active.

Environment: GENJAX_CPU_DEVICES (devices per process with --processes, default 1),
GENJAX_PORT (coordinator port), GENJAX_HEARTBEAT_TIMEOUT_S (seconds before a lost peer
stops the others, default 30), GENJAX_DIE_GRACE_S (seconds the survivors get after a
process dies, default 30).
TXT
}

# Under sbatch, SLURM runs a copy of this script: find the repository from the submit dir.
if [[ -n "${SLURM_JOB_ID:-}" && -f "${SLURM_SUBMIT_DIR:-}/launch.sh" ]]; then
  ROOT="$SLURM_SUBMIT_DIR"
else
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
cd "$ROOT"
# This checkout's code and configs, even where the environment's editable install of
# genjax_lab is another checkout's (one environment shared by several checkouts).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

python_env() {
  # Installs the project (with $1 extras) into .venv once per pyproject version.
  local extras="$1"
  if [[ -n "${VIRTUAL_ENV:-}" ]]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
  elif [[ -n "${CONDA_PREFIX:-}" ]]; then
    PYTHON="$CONDA_PREFIX/bin/python"
  else
    PYTHON="$ROOT/.venv/bin/python"
    [[ -x "$PYTHON" ]] || python3 -m venv "$ROOT/.venv"
  fi
  local prefix; prefix="$("$PYTHON" -c 'import sys; print(sys.prefix)')"
  local stamp="$prefix/.genjax_lab-installed-$(sha1sum pyproject.toml | cut -c1-12)-${extras:-core}"
  if [[ ! -f "$stamp" ]]; then
    echo "launch.sh: installing genjax_lab${extras:+[$extras]} into $prefix" >&2
    "$PYTHON" -m pip install -q --upgrade pip >/dev/null
    "$PYTHON" -m pip install -q -e ".${extras:+[$extras]}"
    touch "$stamp" "${stamp%-*}-core"  # an install with extras includes the core
  fi
}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

workdir_of() {
  # The --workdir the flags name, else runs/<experiment>.
  local experiment="$1"; shift
  local dir="runs/$experiment" prev=""
  for arg in "$@"; do
    case "$arg" in
      --workdir=*) dir="${arg#--workdir=}" ;;
      *) [[ "$prev" == "--workdir" ]] && dir="$arg" ;;
    esac
    prev="$arg"
  done
  echo "$dir"
}

experiment_script() {
  local script="experiments/$1.py"
  if [[ ! -f "$script" ]]; then
    echo "launch.sh: no experiment '$1' (expected $script); experiments: $(ls experiments/*.py | xargs -n1 basename | sed 's/\.py$//' | tr '\n' ' ')" >&2
    exit 2
  fi
  echo "$script"
}

run_local() {
  local experiment="$1"; shift
  local script; script="$(experiment_script "$experiment")"
  exec "$PYTHON" "$script" --workdir="$(workdir_of "$experiment" "$@")" "$@"
}

run_processes() {
  # N processes on this machine: process 0 is the coordinator on 127.0.0.1.
  local n="$1" experiment="$2"; shift 2
  local script; script="$(experiment_script "$experiment")"
  local workdir; workdir="$(workdir_of "$experiment" "$@")"
  local port="${GENJAX_PORT:-$(free_port)}"
  mkdir -p "$workdir/logs"
  export GENJAX_DISTRIBUTED=1 GENJAX_COORDINATOR="127.0.0.1:$port" GENJAX_NUM_PROCESSES="$n"
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${GENJAX_CPU_DEVICES:-1}"
  local pids=() i
  for ((i = 0; i < n; i++)); do
    GENJAX_PROCESS_ID=$i "$PYTHON" "$script" --workdir="$workdir" "$@" >"$workdir/logs/process_$i.log" 2>&1 &
    pids+=($!)
  done
  echo "launch.sh: $n processes (pids ${pids[*]}), coordinator 127.0.0.1:$port, logs in $workdir/logs/"
  trap 'echo "launch.sh: forwarding SIGTERM to all processes" >&2; kill -TERM "${pids[@]}" 2>/dev/null || true' TERM INT
  tail -n +1 -F "$workdir/logs/process_0.log" 2>/dev/null &
  tailer=$!
  # The tailer holds our stdout open: stop it however we leave.
  trap 'kill "$tailer" 2>/dev/null || true' EXIT
  local status=0
  supervise "${pids[@]}" || status=$?
  return $status
}

supervise() {
  # Waits for all; when one fails, names it, gives the rest a grace period, then stops them.
  local pids=("$@") remaining=$# status=0 failed=""
  while ((remaining > 0)); do
    local pid="" code=0
    wait -n -p pid "${pids[@]}" 2>/dev/null || code=$?
    if [[ -z "${pid:-}" ]]; then
      # A trapped signal (SIGTERM forwarded to the processes) interrupts `wait` with a code
      # above 128: keep waiting, so the processes finish their preemption save before we exit.
      ((code > 128)) && continue
      break
    fi
    remaining=$((remaining - 1))
    local index; for index in "${!pids[@]}"; do [[ "${pids[$index]}" == "$pid" ]] && break; done
    if ((code != 0)) && [[ -z "$failed" ]]; then
      failed="$index"; status=$code
      local why="exit code $code"; ((code > 128)) && why="killed by signal $((code - 128))"
      echo "launch.sh: process $index (pid $pid) failed: $why; see its log. Stopping the others in ${GENJAX_DIE_GRACE_S:-30} s." >&2
      ( sleep "${GENJAX_DIE_GRACE_S:-30}"; kill -KILL "${pids[@]}" 2>/dev/null ) &
    fi
  done
  return $status
}

run_slurm_task() {
  # One SLURM task = one JAX process; the coordinator is the job's first node.
  local experiment="$1"; shift
  local script; script="$(experiment_script "$experiment")"
  local first_node; first_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
  export GENJAX_DISTRIBUTED=1 GENJAX_COORDINATOR="$first_node:${GENJAX_PORT:-$((20000 + SLURM_JOB_ID % 10000))}"
  export GENJAX_NUM_PROCESSES="$SLURM_NTASKS" GENJAX_PROCESS_ID="$SLURM_PROCID"
  [[ -n "${GENJAX_CPU_DEVICES:-}" ]] && export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$GENJAX_CPU_DEVICES"
  exec "$PYTHON" "$script" --workdir="$(workdir_of "$experiment" "$@")" "$@"
}

main() {
  [[ $# -ge 1 ]] || { usage >&2; exit 2; }
  case "$1" in
    -h|--help) usage; exit 0 ;;
    test)
      shift
      python_env test
      export XLA_FLAGS="${XLA_FLAGS:-}"
      # Test files spread over GENJAX_TEST_WORKERS processes (pytest-xdist; one file a worker,
      # so a file's module fixtures run once): 2 halve the suite's time on a 2-core machine.
      # Files go in conftest's order (the long ones first), not xdist's (most tests first).
      exec "$PYTHON" -m pytest -n "${GENJAX_TEST_WORKERS:-2}" --dist=loadfile \
        --no-loadscope-reorder "$@" ;;
    lint)
      shift
      python_env test
      # Both run, so one report shows lint errors and unformatted files together.
      status=0
      "$PYTHON" -m ruff check "$@" || status=1
      "$PYTHON" -m ruff format --check || status=1
      exit "$status" ;;
    reliability)
      shift
      python_env test
      export XLA_FLAGS="${XLA_FLAGS:-}" HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-full}"
      exec "$PYTHON" -m pytest -m fault --runslow --fault-trials=20 --reliability-report=docs/reliability.md "$@" ;;
    replicate)
      shift
      python_env ""
      exec "$PYTHON" experiments/replicate.py "$@" ;;
    zoo)
      shift
      python_env ""
      exec "$PYTHON" experiments/zoo.py "$@" ;;
    bench)
      shift
      python_env bench
      exec "$PYTHON" -m benchmarks.run "$@" ;;
    sample|classify|score)
      python_env ""
      exec "$PYTHON" -m genjax_lab.cli "$@" ;;
    --processes)
      [[ $# -ge 3 && "$2" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --processes needs a count and an experiment" >&2; usage >&2; exit 2; }
      python_env ""
      local n="$2"; shift 2
      run_processes "$n" "$@" ;;
    -*) echo "launch.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      python_env ""
      if [[ -n "${SLURM_JOB_ID:-}" && "${GENJAX_IN_SRUN:-0}" != 1 ]]; then
        # The batch script itself: one task per process through srun (which passes env on).
        export GENJAX_IN_SRUN=1
        exec srun --kill-on-bad-exit=1 "$ROOT/launch.sh" "$@"
      elif [[ -n "${SLURM_JOB_ID:-}" && "${SLURM_NTASKS:-1}" -gt 1 ]]; then
        run_slurm_task "$@"
      else
        run_local "$@"
      fi ;;
  esac
}

main "$@"
