"""A real two-node Ray cluster on this machine for tests: `ray start --head` plus `ray start --address`, torn down by pid.

Each node is a `ray start --block` process in its own session; teardown kills those sessions (and any process
left under this cluster's temp dir), never Ray processes it did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# Fast node-death detection, so a killed worker node costs seconds rather than half a minute.
SYSTEM_CONFIG = '{"health_check_period_ms": 500, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class LocalRayCluster:
    """A head node and worker nodes, each a separate `ray start --block` process with ``cpus`` logical CPUs."""

    def __init__(self, cpus: int = 2, object_store_mb: int = 100, head_cpus: int | None = None):
        self.cpus = cpus
        self.head_cpus = cpus if head_cpus is None else head_cpus
        self.object_store = str(object_store_mb * 2**20)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ssray-", dir="/tmp"))  # socket paths must stay short
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0")

    def _start(self, args: list[str], log: str, cpus: int) -> subprocess.Popen:
        out = open(self.temp_dir / log, "w")
        proc = subprocess.Popen(
            [
                RAY,
                "start",
                "--block",
                "--disable-usage-stats",
                "--num-cpus",
                str(cpus),
                "--num-gpus",
                "0",
                "--object-store-memory",
                self.object_store,
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        self.nodes.append(proc)
        return proc

    def start(self, workers: int = 1, timeout_s: float = 120) -> "LocalRayCluster":
        head = self._start(
            [
                "--head",
                "--port",
                str(self.port),
                "--temp-dir",
                str(self.temp_dir),
                "--include-dashboard=false",
                "--dashboard-port",
                str(free_port()),
                "--dashboard-agent-listen-port",
                str(free_port()),
                "--system-config",
                SYSTEM_CONFIG,
            ],
            "head.log",
            self.head_cpus,
        )
        self.wait_started(head, "head.log", timeout_s)
        self.wait_nodes(1, timeout_s)
        for _ in range(workers):
            self.add_worker(timeout_s)
        return self

    def add_worker(self, timeout_s: float = 120) -> subprocess.Popen:
        alive = self.alive_nodes()
        log = f"worker{len(self.nodes)}.log"
        proc = self._start(
            ["--address", self.address, "--dashboard-agent-listen-port", str(free_port())], log, self.cpus
        )
        self.wait_started(proc, log, timeout_s)
        self.wait_nodes(alive + 1, timeout_s)
        return proc

    def wait_started(self, proc: subprocess.Popen, log: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in (self.temp_dir / log).read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node did not start: {self.logs()}")
            time.sleep(0.5)

    def alive_nodes(self) -> int:
        probe = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", probe, self.address], capture_output=True, text=True, env=self.env, timeout=60
        )
        try:
            return int(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    def wait_nodes(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.nodes):
                raise RuntimeError(f"a ray node exited: {self.logs()}")
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"{n} ray nodes did not come up in {timeout_s} s: {self.logs()}")

    def raylet_of(self, node: subprocess.Popen) -> int:
        """The raylet process of a node started here."""
        for pid in _descendants(node.pid):
            if "raylet/raylet" in _cmdline(pid).split(" ")[0]:
                return pid
        raise LookupError(f"no raylet under pid {node.pid}")

    def kill_node(self, node: subprocess.Popen) -> None:
        """kill -9 a node's raylet and everything else that node started (its workers die with it)."""
        raylet = self.raylet_of(node)
        os.kill(raylet, signal.SIGKILL)
        for pid in [node.pid, *_descendants(node.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def logs(self) -> str:
        return " | ".join(f"{p.name}: {p.read_text()[-800:]}" for p in sorted(self.temp_dir.glob("*.log")))

    def stop(self) -> None:
        pids: set[int] = set()
        for node in self.nodes:
            pids.add(node.pid)
            pids.update(_descendants(node.pid))
        marker = str(self.temp_dir)
        for entry in os.listdir("/proc"):  # daemons the head re-parented to init, found by this cluster's temp dir
            if entry.isdigit() and marker in _cmdline(int(entry)):
                pids.add(int(entry))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for node in self.nodes:
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
