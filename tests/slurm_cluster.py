"""A one-node SLURM cluster (munge, slurmctld, slurmd) started for the tests that need it.

It installs Debian's packages where they are missing and the user is root, writes its
own slurm.conf under a temporary folder (found by clients through SLURM_CONF), and
stops its daemons afterwards. Where any of that fails, `start` raises `Unavailable`
with the reason, and the tests skip saying it.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
MUNGE_KEY = pathlib.Path("/etc/munge/munge.key")


class Unavailable(RuntimeError):
    """SLURM cannot run here; the message says why."""


def _run(*command, timeout=120, check=True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise Unavailable(
            f"`{' '.join(command)}` failed ({result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return result


def _install() -> None:
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable("SLURM is not installed and this user cannot apt-get install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run("apt-get", "update", "-qq", timeout=300, env=env)
    _run("apt-get", "install", "-y", "-qq", *PACKAGES, timeout=600, env=env)


def _start_munge() -> None:
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    if _run("pgrep", "-x", "munged", check=False).returncode != 0:
        for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, "munge", "munge")
        _run("runuser", "-u", "munge", "--", "munged", "--force")
    credential = _run("munge", "-n").stdout
    _run("unmunge", input=credential)


class Cluster:
    """A started cluster: `env` carries SLURM_CONF for sbatch, squeue, scontrol..."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.node = socket.gethostname().split(".")[0]

    def write_conf(self) -> None:
        for folder in ("state", "spool", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 2
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=genjax",
                    f"SlurmctldHost={self.node}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    "SlurmctldPort=16817",
                    "SlurmdPort=16818",
                    "AuthType=auth/munge",
                    # A requeued job waits for its old credential to expire (default 120 s).
                    "AuthInfo=cred_expire=10",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "JobRequeue=1",
                    "KillWait=10",
                    f"NodeName={self.node} CPUs={cpus} RealMemory=8000 State=UNKNOWN",
                    (
                        f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE "
                        "State=UP OverSubscribe=FORCE:4"
                    ),
                    "",
                ]
            )
        )

    def start(self) -> None:
        _install()
        _start_munge()
        self.write_conf()
        _run("slurmctld", "-f", str(self.conf), env=self.env)
        _run("slurmd", "-f", str(self.conf), env=self.env)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = _run("sinfo", "-h", "-o", "%t", check=False, env=self.env).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise Unavailable(
            f"the SLURM node did not come up (sinfo state {state!r}); see {self.root / 'log'}"
        )

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld"):
            pid_file = self.root / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass

    # -- job helpers --------------------------------------------------------------

    def sbatch(self, *args: str, cwd: pathlib.Path) -> int:
        out = _run("sbatch", "--parsable", *args, env=self.env, cwd=cwd).stdout.strip()
        return int(out.split(";")[0])

    def state(self, job: int) -> str:
        """The job's state from scontrol (PENDING, RUNNING, COMPLETED, FAILED...)."""
        out = _run("scontrol", "show", "job", str(job), check=False, env=self.env).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"

    def wait(
        self,
        job: int,
        timeout: float = 300,
        states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"),
    ) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.state(job)
            if state in states:
                return state
            time.sleep(0.5)
        raise TimeoutError(f"job {job} still {self.state(job)} after {timeout} s")

    def scontrol(self, *args: str) -> str:
        return _run("scontrol", *args, env=self.env).stdout

    def scancel(self, *args: str) -> None:
        _run("scancel", *args, env=self.env)


def start(root: pathlib.Path) -> Cluster:
    cluster = Cluster(root)
    cluster.start()
    return cluster
