"""A one-node SLURM cluster on this machine, for the tests marked `slurm` (test_slurm.py).

`local_slurm` installs Debian's slurmctld, slurmd, slurm-client and munge when they are missing
(root and apt-get), writes a one-node slurm.conf without accounting, starts munged, slurmctld and
slurmd, waits until the node is idle, and stops the daemons afterwards. The node offers one GPU
(GRES backed by /dev/null) so that GPU requests are scheduled as on a real cluster: SLURM sets
CUDA_VISIBLE_DEVICES, and TensorFlow, finding no CUDA device, runs on the CPU.

The daemons' state lives in a fixed folder (STATE) and they are started with `-f STATE/slurm.conf`,
so a later run finds daemons that an interrupted run left behind and stops them before it starts
its own; test sessions running at the same time on one machine take turns (a lock on LOCK).
Commands inside a job lose `SLURM_CONF` (the executor plugin strips SLURM_* variables before its
nested `srun`), so the configuration is also written to the default path /etc/slurm/slurm.conf,
marked as ours and removed afterwards; a machine that already has a SLURM configuration of its
own is left alone and the tests are skipped, as they are without root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

STATE = Path(tempfile.gettempdir()) / "unet-slurm-test"
LOCK = Path(tempfile.gettempdir()) / "unet-slurm-test.lock"
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# Written by the unet test suite (tests/workflow/conftest.py); removed after the tests."
PACKAGES = {"slurmctld": "slurmctld", "slurmd": "slurmd", "slurm-client": "sbatch", "munge": "munged"}
CPUS = 2


@dataclass
class LocalSlurm:
    host: str
    conf: Path
    cpus: int
    memory_mb: int

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=self.env)


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/bin")


def _install_missing() -> None:
    missing = [pkg for pkg, binary in PACKAGES.items() if _which(binary) is None]
    if not missing:
        return
    if _which("apt-get") is None:
        pytest.skip(f"SLURM packages {missing} missing and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends", *missing]):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child nobody reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _stop(pid: int, timeout: float = 15) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.2)


def _our_daemons() -> list[int]:
    """Pids of slurmctld/slurmd processes started with a configuration under STATE."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name in ("slurmctld", "slurmd") \
                and any(str(STATE).encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


def _stop_previous_run() -> None:
    for pid in _our_daemons():
        _stop(pid)
    owned_munged = STATE / "munged.owned"
    if owned_munged.exists():
        pid = int(owned_munged.read_text() or 0)
        if pid and _alive(pid):
            _stop(pid)
    shutil.rmtree(STATE, ignore_errors=True)
    if DEFAULT_CONF.exists() and MARKER in DEFAULT_CONF.read_text():
        DEFAULT_CONF.unlink()


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        if cred.returncode != 0:
            return False
        return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_munged() -> int | None:
    """Start munged unless one already answers; the pid of the one we started, else None."""
    if _munge_works():
        return None
    key = Path("/etc/munge/munge.key")
    user = "munge" if subprocess.run(["id", "munge"], capture_output=True).returncode == 0 else "root"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        shutil.chown(key, user, user)
    for folder in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, user, user)
    cmd = ["munged", "--force"] if user == "root" else ["runuser", "-u", user, "--", _which("munged")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 30
    while not _munge_works():
        assert time.monotonic() < deadline, "munged did not start"
        time.sleep(0.2)
    return int(Path("/run/munge/munged.pid").read_text())


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _slurm_conf(host: str, memory_mb: int) -> str:
    return f"""{MARKER}
ClusterName=unettest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={STATE}/state
SlurmdSpoolDir={STATE}/spool
SlurmctldPidFile={STATE}/slurmctld.pid
SlurmdPidFile={STATE}/slurmd.pid
SlurmctldLogFile={STATE}/slurmctld.log
SlurmdLogFile={STATE}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
GresTypes=gpu
ReturnToService=2
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName={host} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_idle(cluster: LocalSlurm, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = cluster.run("sinfo", "--noheader", "--nodes", cluster.host, "--format", "%T")
        state = result.stdout.strip()
        if state == "idle":
            return
        if state.startswith(("down", "drain")):
            cluster.run("scontrol", "update", f"nodename={cluster.host}", "state=resume")
        time.sleep(1)
    log = (STATE / "slurmctld.log").read_text()[-3000:] if (STATE / "slurmctld.log").exists() else ""
    raise AssertionError(f"SLURM node {cluster.host} not idle after {timeout} s (state {state!r})\n{log}")


@contextlib.contextmanager
def _machine_lock(timeout: float = 3600):
    """Held while this session's cluster runs: another session waits for its turn."""
    with open(LOCK, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                assert time.monotonic() < deadline, f"another test session kept {LOCK} for {timeout:.0f} s"
                time.sleep(2)
        yield


@pytest.fixture(scope="session")
def local_slurm():
    """A running one-node SLURM cluster (CPUS CPUs, no accounting); stopped after the session."""
    with _machine_lock():
        yield from _local_slurm()


def _local_slurm():
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (slurmd, /etc/slurm)")
    _install_missing()
    if DEFAULT_CONF.exists() and MARKER not in DEFAULT_CONF.read_text():
        pytest.skip(f"{DEFAULT_CONF} exists: this machine has a SLURM configuration of its own")
    _stop_previous_run()
    for folder in ("state", "spool"):
        (STATE / folder).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    memory_mb = int(_memory_mb() * 0.9)
    conf = STATE / "slurm.conf"
    conf.write_text(_slurm_conf(host, memory_mb))
    (STATE / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")  # next to slurm.conf
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_CONF.write_text(conf.read_text())
    cluster = LocalSlurm(host=host, conf=conf, cpus=CPUS, memory_mb=memory_mb)
    munged = None
    try:
        munged = _start_munged()
        if munged is not None:
            (STATE / "munged.owned").write_text(str(munged))
        for daemon in ("slurmctld", "slurmd"):
            result = subprocess.run([_which(daemon), "-f", str(conf)], capture_output=True, text=True,
                                    timeout=60, env=cluster.env)
            assert result.returncode == 0, f"{daemon} did not start: {result.stderr}"
        _wait_idle(cluster)
        yield cluster
    finally:
        for pid in _our_daemons():
            _stop(pid)
        if munged is not None:
            _stop(munged)
        if DEFAULT_CONF.exists() and MARKER in DEFAULT_CONF.read_text():
            DEFAULT_CONF.unlink()
        shutil.rmtree(STATE, ignore_errors=True)
