"""Starting and stopping the daemon under test from a command template.

A template is a shell-like command string with placeholders filled per run:
``{config}`` (cfg.yaml path), ``{port}`` (endpoint port), ``{endpoint}`` (endpoint URL),
``{udp}`` / ``{tcp}`` (``127.0.0.1:N`` the daemon must listen on; also written into the config),
``{python}`` (this interpreter) and ``{repo}`` (the project root).

The command is exec'd directly (no shell), so the measured pid is the daemon itself; a wrapper
such as ``sh -c`` would make the CPU and RSS figures describe the wrapper.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench import procstat

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TRIO_CMD = "{python} -m xray_trio -o -n us-east-1 -c {config}"

# Fake static credentials: the endpoint does not check signatures, but both daemons refuse to
# start uploading without some credentials.
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHMARK0000000",
    "AWS_SECRET_ACCESS_KEY": "benchmark-secret-key-not-real-000000000000",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_LEAKY_PREFIXES = ("AWS_", "ECS_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@dataclass(frozen=True)
class DaemonSpec:
    label: str
    template: str


class DaemonError(RuntimeError):
    pass


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the runner dies, even by SIGKILL, so an
    interrupted benchmark never leaves daemons or senders running (Linux prctl)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningDaemon:
    """A started daemon process; use as a context manager so it is always stopped."""

    def __init__(self, spec: DaemonSpec, endpoint_port: int, workdir: Path, log: Path) -> None:
        self.spec = spec
        workdir = workdir.resolve()  # the daemon runs with this CWD, so paths must be absolute
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port(socket.SOCK_STREAM)
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "cfg.yaml"  # also the ./cfg.yaml the Go daemon looks for in its CWD
        config.write_text(
            "Version: 2\n"
            f'Endpoint: "http://127.0.0.1:{endpoint_port}"\n'
            'Region: "us-east-1"\n'
            "LocalMode: true\n"
            "Socket:\n"
            f'  UDPAddress: "127.0.0.1:{self.udp_port}"\n'
            f'  TCPAddress: "127.0.0.1:{self.tcp_port}"\n'
        )
        empty = workdir / "empty-aws-config"
        empty.write_text("")
        values = {
            "config": str(config),
            "port": str(endpoint_port),
            "endpoint": f"http://127.0.0.1:{endpoint_port}",
            "udp": f"127.0.0.1:{self.udp_port}",
            "tcp": f"127.0.0.1:{self.tcp_port}",
            "python": sys.executable,
            "repo": str(REPO),
        }
        self.argv = [part.format(**values) for part in shlex.split(spec.template)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}
        env.update(_FAKE_ENV)
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(empty)
        # Lets `python -m xray_trio` work from the temp CWD without an installed package.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.log_path = log
        self._log: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # safe: the runner is single-threaded
        )
        self.pid = self.proc.pid

    def __enter__(self) -> RunningDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float) -> float:
        """Blocks until the UDP port is bound; returns the startup time in seconds."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise DaemonError(
                    f"{self.spec.label} exited with {self.proc.returncode} during startup:\n"
                    + self.log_tail()
                )
            if procstat.udp_port_bound(self.udp_port):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise DaemonError(
            f"{self.spec.label} did not bind UDP within {timeout}s:\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
