"""A real one-node SLURM cluster for the tests: munged, slurmctld and slurmd from Debian's
slurm-wlm and munge packages (.ci/run installs them), started as root with every file in one
temporary folder and the configuration passed as SLURM_CONF, so nothing on the machine changes.
`start()` raises Unavailable, with the reason, where that cannot be done."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")


class Unavailable(RuntimeError):
    """No cluster can run here (packages missing, not root, a daemon that does not start)."""


def _free_port_pair(first: int = 6817) -> int:
    for port in range(first, first + 200, 2):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise Unavailable("no free pair of ports for slurmctld and slurmd")


class Cluster:
    """A started cluster: `env` is this process's environment with SLURM_CONF, for the client
    commands and for the jobs they submit (sbatch passes the environment on)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.host = socket.gethostname().split(".")[0]  # what `hostname -s` prints, slurmd's node name
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *command: str, check: bool = True) -> str:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
        return result.stdout

    def sbatch(self, script: str, folder: Path) -> str:
        """Submit `script` from `folder`; returns the job id."""
        path = folder / f"job-{time.monotonic_ns()}.sh"
        path.write_text(script)
        result = subprocess.run(["sbatch", "--parsable", str(path)], cwd=folder, env=self.env, capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"sbatch {path}: {result.stderr.strip()}")
        return result.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as key=value pairs (JobState, Restarts, ExitCode, ...)."""
        fields = self.run("scontrol", "show", "job", "-o", job_id).split()
        return dict(field.split("=", 1) for field in fields if "=" in field)

    def wait_for(self, job_id: str, states: set[str], timeout: float = 600) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.get("JobState") in states:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.get('JobState')} after {timeout} s (waiting for {states})")
            time.sleep(0.2)

    def requeue_now(self, job_id: str, how=("scontrol", "requeue")) -> None:
        """Requeue the job as a preemption does and have it start again at once: SLURM holds a
        requeued job until its credentials expire (BeginTime); StartTime=now+2 (not now, which
        can revoke the new run's credential) brings that forward."""
        self.run(*how, job_id)
        self.wait_for(job_id, {"PENDING", "RUNNING"}, timeout=120)
        if self.job(job_id).get("JobState") == "PENDING":
            self.run("scontrol", "update", f"jobid={job_id}", "StartTime=now+2", check=False)
        self.wait_for(job_id, {"RUNNING", "COMPLETED", "FAILED"}, timeout=120)

    def stop(self) -> None:
        """Stop the daemons, then every process still running a job of this cluster."""
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            try:
                os.kill(int((self.folder / pid_file).read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(1)
        for process in Path("/proc").glob("[0-9]*"):
            try:
                environment = (process / "environ").read_bytes()
            except OSError:
                continue
            if f"SLURM_CONF={self.conf}".encode() in environment.split(b"\0"):
                try:
                    os.kill(int(process.name), signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.folder, ignore_errors=True)


def _config(cluster: Cluster, port: int, cpus: int, memory_mb: int) -> str:
    folder = cluster.folder
    return f"""\
ClusterName=segruntest
SlurmctldHost={cluster.host}(127.0.0.1)
SlurmctldPort={port}
SlurmdPort={port + 1}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long SLURM holds a requeued job (5 s is its least)
AuthInfo=socket={folder}/munge.socket,cred_expire=5
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
KillWait=10
MinJobAge=600
FirstJobId={int(time.time()) % 10_000_000 + 1000}
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
NodeName={cluster.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={cluster.host} Default=YES MaxTime=INFINITE State=UP
"""


def start() -> Cluster:
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not found: install Debian's slurm-wlm and munge (.ci/run does)")
    if os.geteuid() != 0:
        raise Unavailable("the test cluster's daemons run as root")
    # a short folder: munged's and slurmd's sockets live in it, and socket paths end at 107 bytes
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp")))
    folder = cluster.folder
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    folder.chmod(0o755)
    try:
        key = folder / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}", "--force"], check=True, capture_output=True)
        key.chmod(0o400)
        subprocess.run(["munged", "--force", f"--socket={folder}/munge.socket", f"--key-file={key}",
                        f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
                        f"--seed-file={folder}/munged.seed"], check=True, capture_output=True, env=cluster.env)
        memory = subprocess.run(["slurmd", "-C"], capture_output=True, text=True).stdout
        memory_mb = int(next((word.split("=")[1] for word in memory.split() if word.startswith("RealMemory=")), "2048"))
        cluster.conf.write_text(_config(cluster, _free_port_pair(), os.cpu_count() or 1, max(memory_mb - 512, 1)))
        for daemon in (["slurmctld", "-i"], ["slurmd"]):
            # (with SLURM_CONF in their environment, as their job processes then have, for stop())
            subprocess.run([*daemon, "-f", str(cluster.conf)], cwd=folder, check=True, capture_output=True,
                           env=cluster.env)
        deadline = time.monotonic() + 30
        while cluster.run("sinfo", "-h", "-N", "-n", cluster.host, "-o", "%T", check=False).strip() != "idle":
            if time.monotonic() > deadline:
                raise Unavailable(f"the node never became idle: {(folder / 'slurmd.log').read_text()[-500:]}")
            time.sleep(0.2)
    except (subprocess.CalledProcessError, OSError, Unavailable) as error:
        cluster.stop()
        detail = getattr(error, "stderr", b"") or b""
        raise Unavailable(f"the test cluster did not start: {error} {detail.decode(errors='replace')[-300:]}") from None
    return cluster
