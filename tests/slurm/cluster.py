"""A real Slurm cluster on this machine: slurmctld and two slurmd daemons as virtual nodes n1 and n2.

Debian's ``slurm-wlm`` and ``munge`` run as root without systemd (``../shared/notes/local-slurm.md``).
Everything the cluster writes lives under one work directory, with its own munge socket and free
ports, so it cannot disturb (or be disturbed by) a Slurm or munge the machine already runs. Daemons
are started as child processes and stopped by the PIDs recorded here, never by name.

``start_cluster(work)`` returns the running cluster, or None and the reason it cannot start here (not
root, no apt-get, installation failed, a daemon exited, ...); the tests skip with that reason.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
CLIENTS = ("sbatch", "scontrol", "squeue", "scancel", "sinfo")
NODES = ("n1", "n2")
CPUS_PER_NODE = 2


class SlurmUnavailable(RuntimeError):
    pass


def _installed() -> bool:
    return all(Path(d).is_file() for d in DAEMONS) and all(shutil.which(c) for c in CLIENTS)


def install_if_missing(timeout: float = 600) -> None:
    """apt-get install slurm-wlm munge when they are missing; SlurmUnavailable with the reason otherwise."""
    if _installed():
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("Slurm is not installed and installing it needs root (apt-get install slurm-wlm munge)")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable("Slurm is not installed and there is no apt-get to install slurm-wlm and munge")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, timeout=timeout)

    install = ("install", "-y", "-q", "slurm-wlm", "munge")
    done = apt_get(*install)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        apt_get("update", "-q")
        done = apt_get(*install)
    if not _installed():
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise SlurmUnavailable(f"apt-get install slurm-wlm munge failed: {' | '.join(tail)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalSlurm:
    work: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    munge_dir: Optional[Path] = None

    @property
    def conf(self) -> Path:
        return self.work / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for client commands (sbatch, scontrol, ...) that talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # ---------------------------------------------------------------------------------------- start/stop

    def start(self, timeout: float = 60) -> None:
        install_if_missing()
        if os.geteuid() != 0:
            raise SlurmUnavailable("slurmd must run as root to start jobs as the submitting user")
        host = socket.gethostname().split(".")[0]
        try:
            socket.gethostbyname(host)
        except OSError:
            raise SlurmUnavailable(f"this machine's name {host!r} does not resolve (add it to /etc/hosts)") from None
        for sub in ("etc", "state", "log", "run", *(f"spool/{n}" for n in NODES)):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        # munged runs as the munge user and checks every directory above its socket: it gets its own
        # directory straight under the system's temporary folder (sticky), not inside the root-only work dir
        self.munge_dir = munge_dir = Path(tempfile.mkdtemp(prefix="vidprism-munge-"))
        shutil.chown(munge_dir, "munge", "munge")
        munge_dir.chmod(0o755)  # munged wants everyone able to reach its socket
        self._write_conf(host)
        self._spawn("munged", ["setpriv", "--reuid=munge", "--regid=munge", "--init-groups", "/usr/sbin/munged",
                               "-F", f"--socket={munge_dir / 'munge.socket'}", f"--pid-file={munge_dir / 'munged.pid'}",
                               f"--seed-file={munge_dir / 'munged.seed'}", f"--log-file={munge_dir / 'munged.log'}"])
        self._wait(lambda: (munge_dir / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: "UP" in self._run(["scontrol", "ping"], check=False), timeout, "slurmctld did not come up")
        for node in NODES:
            self._spawn(f"slurmd-{node}", ["/usr/sbin/slurmd", "-D", "-N", node, "-f", str(self.conf)])

        def all_idle() -> bool:
            states = self._run(["sinfo", "-h", "-N", "-o", "%N %T"], check=False).split()
            return states.count("idle") == len(NODES)
        self._wait(all_idle, timeout, "the nodes did not become idle")

    def stop(self) -> None:
        """Stop the daemons by their PIDs: slurmds, then slurmctld, then munged."""
        order = [name for name in self.procs if name.startswith("slurmd-")] + ["slurmctld", "munged"]
        for name in order:
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        if self.munge_dir is not None:
            shutil.rmtree(self.munge_dir, ignore_errors=True)
            self.munge_dir = None

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.work / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        log.close()

    def _wait(self, ready, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise SlurmUnavailable(f"{message}" + (f"; exited: {dead}" if dead else "") + f"\n{self.logs()}")
            time.sleep(0.3)

    def _write_conf(self, host: str) -> None:
        w = self.work
        nodes = "\n".join(
            f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={_free_port()} CPUs={CPUS_PER_NODE} "
            f"RealMemory=4000 State=UNKNOWN" for n in NODES)
        # cred_expire: a requeued job may start again only once its credentials expired (default 120 s)
        self.conf.write_text(f"""ClusterName=vidprism-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_dir / 'munge.socket'},cred_expire=10
StateSaveLocation={w / 'state'}
SlurmdSpoolDir={w / 'spool'}/%n
SlurmctldPidFile={w / 'run' / 'slurmctld.pid'}
SlurmdPidFile={w / 'run'}/slurmd-%n.pid
SlurmctldLogFile={w / 'log' / 'slurmctld.log'}
SlurmdLogFile={w / 'log'}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={w / 'log' / 'jobcomp.txt'}
ReturnToService=2
MinJobAge=600
EnforcePartLimits=ALL
MailProg=/bin/true
{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    # ---------------------------------------------------------------------------------------- clients

    def _run(self, command: list[str], check: bool = True, timeout: float = 30) -> str:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def sbatch(self, script: Path, args: list[str], sbatch_options: list[str], env: dict[str, str],
               cwd: Path) -> str:
        """Submit; returns the job id."""
        done = subprocess.run(["sbatch", "--parsable", *sbatch_options, str(script), *args], cwd=cwd,
                              env={**self.env, **env}, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, ExitCode, Restarts, NodeList, ...)."""
        text = self._run(["scontrol", "show", "job", job_id, "--oneliner"], check=False)
        fields = {}
        for item in text.split():
            key, _, value = item.partition("=")
            fields.setdefault(key, value)
        return fields

    def wait_for_job(self, job_id: str, timeout: float) -> dict[str, str]:
        """Wait until the job has ended for good (a requeued job passes through PENDING again)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return info
            if time.monotonic() > deadline:
                self._run(["scancel", job_id], check=False)
                raise TimeoutError(f"job {job_id} still {info.get('JobState')} after {timeout:.0f} s\n{self.logs()}")
            time.sleep(1)

    def signal_batch_script(self, job_id: str, signal_name: str) -> None:
        """What ``#SBATCH --signal=B:USR1@T`` does T seconds before the time limit: signal the batch shell only."""
        self._run(["scancel", f"--signal={signal_name}", "--batch", job_id])

    def logs(self, lines: int = 15) -> str:
        parts = []
        for path in sorted((self.work / "log").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def start_cluster(work: Path) -> tuple[Optional[LocalSlurm], str]:
    """(cluster, "") when it runs; (None, reason) when it cannot start here."""
    cluster = LocalSlurm(work)
    # daemons run in their own sessions: stop them even when the test process ends without teardown
    atexit.register(cluster.stop)
    try:
        cluster.start()
    except (SlurmUnavailable, OSError, subprocess.SubprocessError) as err:
        cluster.stop()
        return None, str(err)
    return cluster, ""
