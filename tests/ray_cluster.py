"""A real multi-node Ray cluster on this machine, for the ingest tests and benchmark.

``ray start --head`` plus worker nodes joining it with ``--address``, each with a small CPU count
and a small object store, all under a private ``--temp-dir`` and on ports picked free, so another
Ray on the machine is never touched. Each node runs as ``ray start --block`` in its own session:
stopping a node is signalling the processes of that session (the ones this helper started), never
``ray stop``, which would stop every Ray on the machine. Killing a node with SIGKILL is how the
fault test makes a node die.

Ray 2.x turns ``--node-ip-address=127.0.0.1`` into the machine's own address when a cluster may
have several nodes (``ray._private.services.resolve_ip_for_localhost``), so the nodes advertise
that address; the cluster is still joined at ``127.0.0.1:<port>`` and nothing leaves the machine.
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
#: Node death is noticed after about period × threshold (Ray's defaults take tens of seconds).
ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on this machine right now."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    """A head node and worker nodes; ``address`` is ``127.0.0.1:<gcs port>``."""

    def __init__(self, cpus_per_node: int = 1, object_store_bytes: int = 100_000_000):
        self.temp = tempfile.mkdtemp(prefix="rayi-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.cpus = cpus_per_node
        self.store = object_store_bytes
        self.nodes: list[subprocess.Popen] = []
        self.logs: list[str] = []
        self._pending = 0
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        # Ray 2.6x authenticates with a token; this cluster's own, in its temp dir (never ~/.ray)
        token = os.path.join(self.temp, "auth_token")
        with open(token, "w") as fh:
            fh.write(os.urandom(32).hex())
        self.env = {**os.environ, **ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token}
        for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
            self.env.pop(name, None)

    def _start(self, head: bool, wait: bool = True) -> subprocess.Popen:
        ports = free_ports(6 + 40)
        args = [
            RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}", "--num-gpus=0",
            f"--object-store-memory={self.store}", f"--temp-dir={self.temp}", "--disable-usage-stats",
            f"--object-manager-port={ports[0]}", f"--node-manager-port={ports[1]}", f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}", f"--runtime-env-agent-port={ports[4]}", f"--metrics-export-port={ports[5]}",
            "--worker-port-list=" + ",".join(map(str, ports[6:])),
        ]
        args += [f"--port={self.port}", "--head", "--include-dashboard=false"] if head else [f"--address={self.address}"]
        log = open(os.path.join(self.temp, f"node{len(self.nodes)}.log"), "w")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        log.close()
        self.nodes.append(proc)
        self.logs.append(log.name)
        if wait:
            self._wait_started(proc, log.name)
        return proc

    def _wait_started(self, proc: subprocess.Popen, log: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in Path(log).read_text(errors="replace"):
                return
            if proc.poll() is not None:
                raise RuntimeError(f"ray start failed:\n{Path(log).read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"ray start did not finish in {timeout} s:\n{Path(log).read_text(errors='replace')[-3000:]}")

    def start(self, workers: int = 1) -> "Cluster":
        """Start the head, then ``workers`` worker nodes (all stopped again if one fails)."""
        try:
            self._start(head=True)
            for _ in range(workers):
                self._start(head=False)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self, workers: int = 1) -> "Cluster":
        """Start the head without waiting for it; :meth:`ready` waits, then adds ``workers``."""
        self._start(head=True, wait=False)
        self._pending = workers
        return self

    def ready(self) -> "Cluster":
        """Wait for the head started by :meth:`launch`, then start its worker nodes (once)."""
        try:
            self._wait_started(self.nodes[0], self.logs[0])
            while self._pending:
                self._pending -= 1
                self._start(head=False)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self) -> subprocess.Popen:
        """One more worker node."""
        return self._start(head=False)

    def kill(self, node: subprocess.Popen) -> None:
        """SIGKILL every process of the node's session: the node dies as a machine would."""
        _signal_session(node.pid, signal.SIGKILL)
        node.wait()

    def stop(self) -> None:
        """Kill every process of every node this cluster started and remove its temporary
        folder (a graceful ``ray start --block`` shutdown waits tens of seconds for nothing)."""
        for node in reversed(self.nodes):
            _signal_session(node.pid, signal.SIGKILL)
            node.wait()
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _session_members(sid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after "pid (comm)": state, ppid, pgrp, session
            out.append(int(entry))
    return out


def _signal_session(sid: int, sig: int) -> None:
    for pid in _session_members(sid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
